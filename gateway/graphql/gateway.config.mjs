// The GraphQL federation gateway (Hive Gateway) behind Envoy's /graphql: it serves the
// supergraph composed by `make gen` (supergraph.graphql, tools/supergraph.py) and calls the
// services' subgraphs through Envoy's subgraph listener (ordermesh.gateway.envoy), which balances
// their healthy instances and counts mutations against the global write limits.
//
// Run from this directory (the harness, tools/up.py, compose.yaml and the Kubernetes
// manifests do): node_modules/.bin/node node_modules/@graphql-hive/gateway/dist/bin.js
// supergraph. It needs the packages of package.json (graphql-query-complexity and three of
// graphql-armor's besides Hive's own). Settings from the environment:
//   PORT, HOST         where it listens (127.0.0.1:4000: only Envoy beside it should connect)
//   SUBGRAPHS_URL      the subgraph listener, e.g. http://127.0.0.1:8081 (the supergraph's
//                      URLs name compose.yaml's; this replaces their origin)
//   MAX_DEPTH, MAX_TOKENS, MAX_COST, MAX_ALIASES, MAX_DIRECTIVES   the limits below
//   CORS_ORIGINS       the web origins whose pages may call /graphql from a browser,
//                      comma-separated, e.g. https://shop.example.com (none by default)
//   INTERNAL_TOKEN     the secret of the internal hops (ordermesh.gateway.envoy): required from
//                      Envoy on /graphql, sent on every subgraph call
//   LOG_LEVEL, INSTANCE_ID             its JSON log lines
//
// What it tells Envoy's subgraph listener on every call it makes for a client's operation:
//   x-ordermesh-graphql-cost       the operation's estimated cost (a decimal integer, the
//                                  same on each of its calls), which the rate limits charge
//   x-ordermesh-graphql-call       1, 2, ...: which of the operation's calls this is (the
//                                  cost is the whole operation's: charge it once)
//   x-ordermesh-graphql-operation  "mutation" on a mutation's calls (counted as writes)
// and the client, in the answer: x-ordermesh-graphql-cost, the same estimate (also on a refusal
// for cost; not on one refused before it was priced: unparsable, invalid, too deep, ...).
import { defineConfig, JSONLogWriter, Logger } from "@graphql-hive/gateway";
import { maxAliasesPlugin } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthPlugin } from "@escape.tech/graphql-armor-max-depth";
import { maxDirectivesPlugin } from "@escape.tech/graphql-armor-max-directives";
import { timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  getNamedType,
  getVariableValues,
  GraphQLError,
  isCompositeType,
  isListType,
  isNonNullType,
  Kind,
  parse,
  valueFromASTUntyped,
} from "graphql";
import { getComplexity } from "graphql-query-complexity";

const number = (name, fallback) => {
  const value = process.env[name];
  if (value === undefined || value === "") return fallback;
  const parsed = Number.parseInt(value, 10);
  if (!Number.isSafeInteger(parsed) || parsed <= 0) {
    throw new Error(`${name} must be a positive integer, not ${JSON.stringify(value)}`);
  }
  return parsed;
};

/** CORS_ORIGINS: exact origins (scheme://host[:port]); "*" is refused, as a path would be. */
const origins = (name) => {
  const given = (process.env[name] ?? "").split(",").map((o) => o.trim()).filter(Boolean);
  for (const origin of given) {
    let parsed = null;
    try {
      parsed = new URL(origin);
    } catch {
      // refused below
    }
    if (parsed === null || parsed.origin !== origin) {
      throw new Error(`${name}: ${JSON.stringify(origin)} is not an origin (scheme://host[:port])`);
    }
  }
  return new Set(given);
};

const SUPERGRAPH = fileURLToPath(new URL("supergraph.graphql", import.meta.url));
const subgraphs = process.env.SUBGRAPHS_URL ? new URL(process.env.SUBGRAPHS_URL) : null;
const MAX_COST = number("MAX_COST", 5000);
const CORS_ORIGINS = origins("CORS_ORIGINS");
const ENDPOINT = "/graphql";

// What a client's request carries on to the subgraphs: the token (each subgraph verifies it,
// as the services do, and so does Envoy's subgraph listener, whose write limits count by its
// user), the client's address as Envoy's public listener saw it (they count by that too; never
// X-Forwarded-For, which a client writes), the request and trace ids (one request's log lines
// and spans, across every process).
const PROPAGATED = [
  "authorization",
  "x-ordermesh-client",
  "x-request-id",
  "traceparent",
  "tracestate",
];
// The secret of the system's internal hops (ordermesh.gateway.envoy): Envoy's public listener sends
// it with every /graphql request, and this gateway sends it with every subgraph call; a
// request without it came around Envoy (this port is reachable on the host, or in the
// network) and is refused.
const INTERNAL_HEADER = "x-ordermesh-internal";
const INTERNAL_TOKEN = process.env.INTERNAL_TOKEN ?? "";
if (INTERNAL_TOKEN.length < 16) {
  throw new Error("INTERNAL_TOKEN must be set (16 characters at least): the internal hops' secret");
}
const fromEnvoy = (request) => {
  const given = Buffer.from(request.headers.get(INTERNAL_HEADER) ?? "");
  const expected = Buffer.from(INTERNAL_TOKEN);
  return given.length === expected.length && timingSafeEqual(given, expected);
};
const OPERATION_HEADER = "x-ordermesh-graphql-operation";
const COST_HEADER = "x-ordermesh-graphql-cost";
const CALL_HEADER = "x-ordermesh-graphql-call";
// The roles of the request's token. Envoy verified it (signature, expiry, session not ended)
// before the request came here, and let no other credential through (its credential rule), and
// only Envoy can call this port (INTERNAL_HEADER): its payload is read, not verified again.
const rolesOf = (request) => {
  const [, payload] = (request.headers.get("authorization") ?? "").replace(/^Bearer /, "").split(".");
  try {
    const roles = JSON.parse(Buffer.from(payload ?? "", "base64url").toString()).roles;
    return Array.isArray(roles) ? roles : [];
  } catch {
    return [];
  }
};

const graphqlError = (message, code, grpcStatus, extensions = {}) =>
  new GraphQLError(message, { extensions: { code, grpcStatus, ...extensions } });

// ---- Cost -------------------------------------------------------------------------------
// An operation's estimated cost, computed before any subgraph is asked, over the client's
// document with its fragments expanded where they are spread (graphql-query-complexity): each
// object costs 1, a scalar 0; a list field multiplies what it selects by its size: its slicing
// argument (`first`, from @listSize in the supergraph; a page's list by its page's `first`),
// else LIST_SIZE. Introspection costs as much as any other selection. `products(first: 100)
// { products { name } }` costs 101; 20 orders of 10 items with products cost 621.
//
// Hive's own demandControl summed the cost of each subgraph call's document as written: a
// fragment's fields were counted once where the fragment was defined, outside the list that
// spread it, so 60 x `products(first: 100) { ...P }` (P on ProductPage) cost 3,090 and was
// answered, while the same inline cost 6,060 and was refused. Nor was anything known before
// the first subgraph call, and calls never made cost nothing: `me { orders(first: 100) { items
// { product { price { amountMinor } } } } }` cost 302 for a user without orders, 3,101 here.
// For inline queries of one subgraph its figures are these (300 generated ones: all equal).
const LIST_SIZE = 10;
// Past this many selections visited (fragments spread into one another multiply them), the
// estimate stops and the operation is refused: 31 fragments each spreading the next twice
// (2^30 selections) were refused in 11 ms.
const MAX_NODES = 10_000;

/** The supergraph's @listSize, by "Type.field" (`byField`), and the lists a page's slicing
 * argument sizes (`sizedByPage`: ProductPage.products, by Query.products' `first`). */
const readListSizes = (sdl) => {
  const byField = new Map();
  const sizedByPage = new Set();
  const document = parse(sdl);
  const returns = new Map(); // "Type.field" -> the named type it returns
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OBJECT_TYPE_DEFINITION || !definition.fields) continue;
    for (const field of definition.fields) {
      let type = field.type;
      while (type.kind !== Kind.NAMED_TYPE) type = type.type;
      const key = `${definition.name.value}.${field.name.value}`;
      returns.set(key, type.name.value);
      for (const directive of field.directives ?? []) {
        if (directive.name.value !== "listSize" && directive.name.value !== "cost__listSize") {
          continue;
        }
        const args = Object.fromEntries(
          (directive.arguments ?? []).map((a) => [a.name.value, valueFromASTUntyped(a.value)]),
        );
        byField.set(key, {
          slicingArguments: args.slicingArguments ?? [],
          sizedFields: args.sizedFields ?? [],
          assumedSize: args.assumedSize ?? null,
        });
      }
    }
  }
  for (const [key, listSize] of byField) {
    for (const field of listSize.sizedFields) sizedByPage.add(`${returns.get(key)}.${field}`);
  }
  return { byField, sizedByPage };
};

const LIST_SIZES = readListSizes(readFileSync(SUPERGRAPH, "utf8"));

const listDepth = (type) => {
  let depth = 0;
  for (let t = type; isListType(t) || isNonNullType(t); t = t.ofType) {
    if (isListType(t)) depth += 1;
  }
  return depth;
};

const sizeOf = (listSize, args) => {
  const given = listSize.slicingArguments
    .map((name) => Number(args[name]))
    .filter((n) => Number.isFinite(n));
  // As Hive counts them: a size below 1 counts 1 (the subgraphs refuse it anyway).
  if (given.length > 0) return Math.max(1, ...given);
  return listSize.assumedSize ?? LIST_SIZE;
};

const estimator = ({ type, field, args, childComplexity }) => {
  const key = `${type.name}.${field.name}`;
  const own = isCompositeType(getNamedType(field.type)) ? 1 : 0;
  const listSize = LIST_SIZES.byField.get(key);
  // A page multiplies what it holds by its `first`: its list, and scalars that cost 0 (were it
  // to hold another object, that would count `first` times: too much, never too little).
  if (listSize?.sizedFields.length) return own + sizeOf(listSize, args) * childComplexity;
  if (listSize) return sizeOf(listSize, args) * (own + childComplexity);
  if (LIST_SIZES.sizedByPage.has(key)) return own + childComplexity; // its page multiplies it
  const lists = listDepth(field.type);
  return (lists > 0 ? LIST_SIZE * lists : 1) * (own + childComplexity);
};

/** The operation's estimated cost; null if its variables are wrong (execution says how). */
const costOf = ({ schema, document, variableValues, operationName }) => {
  const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  const operation =
    operationName == null ? operations[0] : operations.find((o) => o.name?.value === operationName);
  if (operation === undefined) return null;
  const definitions = operation.variableDefinitions ?? [];
  if (getVariableValues(schema, definitions, variableValues ?? {}).errors) return null;
  return getComplexity({
    schema,
    query: document,
    variables: variableValues ?? {},
    operationName: operationName ?? undefined,
    estimators: [estimator],
    maxQueryNodes: MAX_NODES,
  });
};

// The cost of each request's operation (by its Request), for its answer and its calls.
const costs = new WeakMap();

const tooCostly = (
  estimated,
  message = `Operation estimated cost ${estimated} exceeded configured maximum ${MAX_COST}`,
) =>
  graphqlError(message, "RESOURCE_EXHAUSTED", 8, {
    reason: "COST_ESTIMATED_TOO_EXPENSIVE",
    cost: { estimated, max: MAX_COST },
  });

/** Refuses an operation that costs more than MAX_COST before any subgraph is asked (its cost
 * in the error's `extensions.cost`, as Hive's demandControl said it). Every priced operation's
 * cost goes in its answer's COST_HEADER (`requests`) and on each of its subgraph calls. */
const costLimit = {
  onExecute({ args, setResultAndStopExecution }) {
    let estimated;
    try {
      estimated = costOf(args);
    } catch (error) {
      // Past MAX_NODES, or anything else the estimate could not do: never answered unpriced.
      setResultAndStopExecution({ errors: [tooCostly(null, error.message)] });
      return;
    }
    if (estimated === null) return;
    costs.set(args.contextValue.request, { estimated, calls: 0 });
    if (estimated > MAX_COST) setResultAndStopExecution({ errors: [tooCostly(estimated)] });
  },
};

/** Points each subgraph call at SUBGRAPHS_URL, and tells Envoy what it is part of. */
const subgraphCalls = {
  onFetch({ url, setURL, options, setOptions, context, executionRequest }) {
    if (subgraphs !== null) {
      const target = new URL(url);
      target.protocol = subgraphs.protocol;
      target.host = subgraphs.host;
      setURL(target.toString());
    }
    const headers = new Headers(options.headers);
    const cost = costs.get(context.request);
    if (cost === undefined) {
      // Never a call without its operation's cost: Envoy could not charge it.
      const message = "internal error: a subgraph call of an unpriced operation";
      throw graphqlError(message, "INTERNAL", 13);
    }
    cost.calls += 1;
    headers.set(INTERNAL_HEADER, INTERNAL_TOKEN);
    headers.set(COST_HEADER, String(cost.estimated));
    headers.set(CALL_HEADER, String(cost.calls));
    if (executionRequest?.operationType === "mutation") headers.set(OPERATION_HEADER, "mutation");
    setOptions({ ...options, headers: Object.fromEntries(headers) });
  },
};

// ---- Introspection -----------------------------------------------------------------------
// The composed schema is published as a file (supergraph.graphql); introspection is for
// admins only (the roles of the token Envoy verified), within the same depth, alias
// and cost limits as any query. Each refusal is a validation rule of its own name, so that
// Yoga's validation cache (by document and rule names) never hands one caller's verdict to
// another.
const introspects = (node) => node.name.value === "__schema" || node.name.value === "__type";

/** Reports each introspection field of the document (its fragments too): refused. `spec:
 * false` keeps the status for an application/json answer (Yoga answers 200 for the spec's). */
const refuseIntrospection = (context, message, code, grpcStatus, status) => ({
  Field(node) {
    if (!introspects(node)) return;
    const http = { status, spec: false };
    context.reportError(
      new GraphQLError(message, { nodes: [node], extensions: { code, grpcStatus, http } }),
    );
  },
});

function IntrospectionNeedsAnAdminToken(context) {
  const message = "introspection is for admins: send an admin's token";
  return refuseIntrospection(context, message, "UNAUTHENTICATED", 16, 401);
}

function IntrospectionIsForAdmins(context) {
  return refuseIntrospection(context, "introspection is for admins", "PERMISSION_DENIED", 7, 403);
}

const adminOnlyIntrospection = {
  onValidate({ context, addValidationRule }) {
    const headers = context.request.headers;
    if (!headers.has("authorization")) {
      addValidationRule(IntrospectionNeedsAnAdminToken);
      return;
    }
    if (!rolesOf(context.request).includes("admin")) addValidationRule(IntrospectionIsForAdmins);
  },
};

// ---- HTTP --------------------------------------------------------------------------------
// Only POST with the operation in its JSON body: nothing in the URL (neither a query, whose
// variables could hold anything, nor a token: tokens travel in `authorization` only, and URLs
// end up in logs and browser histories). Cross-origin callers only from CORS_ORIGINS, without
// credentials (the token is a header the page's script sets, never a cookie).
const ALLOWED_HEADERS = [
  "authorization",
  "content-type",
  "x-request-id",
  "traceparent",
  "tracestate",
];

const refusal = (fetchAPI, status, code, grpcStatus, message, headers = {}) => {
  const body = JSON.stringify({ errors: [{ message, extensions: { code, grpcStatus } }] });
  return new fetchAPI.Response(body, {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
};

const preflightHeaders = (origin) => ({
  "access-control-allow-origin": origin,
  "access-control-allow-methods": "POST",
  "access-control-allow-headers": ALLOWED_HEADERS.join(", "),
  "access-control-max-age": "600",
  vary: "Origin",
});
const corsHeaders = (origin) => ({
  "access-control-allow-origin": origin,
  "access-control-expose-headers": COST_HEADER,
  vary: "Origin",
});

const requests = {
  onRequest({ request, url, fetchAPI, endResponse }) {
    if (url.pathname !== ENDPOINT) return;
    const origin = request.headers.get("origin");
    if (!fromEnvoy(request)) {
      const message = "this port takes calls from the gateway only";
      endResponse(refusal(fetchAPI, 401, "UNAUTHENTICATED", 16, message));
    } else if (request.method === "OPTIONS") {
      endResponse(
        origin !== null && CORS_ORIGINS.has(origin)
          ? new fetchAPI.Response(null, { status: 204, headers: preflightHeaders(origin) })
          : refusal(fetchAPI, 403, "PERMISSION_DENIED", 7, "this origin may not call /graphql"),
      );
    } else if (request.method !== "POST") {
      endResponse(
        refusal(fetchAPI, 405, "INVALID_ARGUMENT", 3, "POST the operation as JSON", {
          allow: "POST",
        }),
      );
    } else if (url.search !== "") {
      const message =
        "nothing goes in the URL: the operation in the body, a token in 'authorization: Bearer'";
      endResponse(refusal(fetchAPI, 400, "INVALID_ARGUMENT", 3, message));
    }
  },
  onResponse({ request, response }) {
    const cost = costs.get(request);
    if (cost !== undefined) response.headers.set(COST_HEADER, String(cost.estimated));
    const origin = request.headers.get("origin");
    if (origin === null || !CORS_ORIGINS.has(origin) || request.method === "OPTIONS") return;
    for (const [name, value] of Object.entries(corsHeaders(origin))) {
      response.headers.set(name, value);
    }
  },
};

// ---- Errors ------------------------------------------------------------------------------
// Every error a client sees carries a gRPC status in `extensions` (`code`: its name,
// `grpcStatus`: its number), as the subgraphs' errors do (ordermesh.graphql); those the gateway
// makes itself get one from their code, kept as `reason`.
const STATUS_OF_CODE = {
  GRAPHQL_PARSE_FAILED: ["INVALID_ARGUMENT", 3],
  GRAPHQL_VALIDATION_FAILED: ["INVALID_ARGUMENT", 3],
  BAD_USER_INPUT: ["INVALID_ARGUMENT", 3],
  COST_ESTIMATED_TOO_EXPENSIVE: ["RESOURCE_EXHAUSTED", 8],
  DOWNSTREAM_SERVICE_ERROR: ["UNAVAILABLE", 14],
  SUBREQUEST_HTTP_ERROR: ["UNAVAILABLE", 14],
  INTERNAL_SERVER_ERROR: ["INTERNAL", 13],
};
// graphql-armor's refusals (depth, tokens, aliases, directives) say "Syntax Error: ..." and
// carry no code: they are the request's fault, answered 400.
const REFUSED = ["INVALID_ARGUMENT", 3];
// "Did you mean ...?" would tell a stranger the schema: graphql-armor masks it in validation
// errors (blockFieldSuggestions), and this in the rest (a variable's misspelt input field).
const SUGGESTION = /\s*Did you mean .+?\?/g;

const withStatus = (error) => {
  // Which subgraph answered is the system's inside, not the client's business.
  const { serviceName, ...extensions } = error.extensions ?? {};
  const message = error.message.replace(SUGGESTION, "");
  if (extensions.grpcStatus !== undefined && message === error.message && !serviceName) {
    return error;
  }
  const [code, grpcStatus] =
    extensions.grpcStatus !== undefined
      ? [extensions.code, extensions.grpcStatus]
      : (STATUS_OF_CODE[extensions.code] ?? REFUSED);
  const http = extensions.http ?? (extensions.code === undefined ? { status: 400 } : undefined);
  return new GraphQLError(message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: {
      ...extensions,
      code,
      grpcStatus,
      ...(extensions.code && extensions.code !== code ? { reason: extensions.code } : {}),
      ...(http ? { http } : {}),
    },
  });
};

const statuses = {
  onResultProcess({ result, setResult }) {
    if (Array.isArray(result) || !result?.errors?.length) return;
    setResult({ ...result, errors: result.errors.map(withStatus) });
  },
};

export const gatewayConfig = defineConfig({
  supergraph: SUPERGRAPH,
  // The schema is composed offline and never changes while the gateway runs.
  pollingInterval: 0,
  host: process.env.HOST || "127.0.0.1",
  port: number("PORT", 4000),
  graphqlEndpoint: ENDPOINT,
  landingPage: false,
  graphiql: false,
  // CORS is `requests` above: Yoga's own answers every preflight 204 and a listed origin's
  // with any other's refusal ("null") still credentialed.
  cors: false,
  // Refused before any subgraph is asked, every query alike (introspection too): too many
  // tokens (Hive's), too deep, too many aliases or directives (graphql-armor's, counted through
  // fragments, a fragment's selections at the depth it is spread: me.orders.items.product.
  // price.amountMinor is 6), too costly (costLimit). No client of ours needs an alias or a
  // directive; 15 aliases (graphql-armor's default) still fetch 15 products in one request,
  // and every alias of a list is priced anyway.
  maxTokens: number("MAX_TOKENS", 1000),
  blockFieldSuggestions: true,
  propagateHeaders: {
    fromClientToSubgraphs({ request }) {
      return Object.fromEntries(
        PROPAGATED.filter((name) => request.headers.has(name)).map((name) => [
          name,
          request.headers.get(name),
        ]),
      );
    },
  },
  plugins: () => [
    requests,
    maxDepthPlugin({
      n: number("MAX_DEPTH", 8),
      ignoreIntrospection: false,
      flattenFragments: true,
    }),
    maxAliasesPlugin({ n: number("MAX_ALIASES", 15) }),
    maxDirectivesPlugin({ n: number("MAX_DIRECTIVES", 10) }),
    adminOnlyIntrospection,
    costLimit,
    subgraphCalls,
    statuses,
  ],
  upstreamTimeout: 10_000,
  // One subgraph call per delegation, never several merged into one (Hive's default, by
  // @graphql-tools/batch-execute): entities of one level still go in one call (batch-delegate's
  // `_entities` keys). Merged, two root fields of one subgraph that both fail lost one's error:
  // the subgraph nulls `data` at the first non-null root field's error and reports only that
  // one, and the split gave the other field `null` without an error, answered as INTERNAL
  // "Unexpected error." (`{ product(productId: "") { name } products(first: 0) { nextPageToken
  // } }`; tests/e2e/test_fuzz_graphql.py). It costs a call per root field (15 aliases at most)
  // and per path that needs one subgraph's entities, where merged they made one.
  __experimental__batchExecution: false,
  // JSON lines with the service's name, as every process of the system writes them (`make logs`).
  // At debug level Hive logs each subgraph call's headers: never its token.
  logging: new Logger({
    level: (process.env.LOG_LEVEL || "info").toLowerCase(),
    attrs: { service: "graphql", instance: process.env.INSTANCE_ID || "graphql" },
    writers: [new JSONLogWriter()],
    redact: ["headers.authorization", "headers.Authorization", "headers.cookie"],
  }),
});
