// The GraphQL federation gateway (Hive Gateway) behind Envoy's /graphql: it serves the
// supergraph composed by `make gen` (supergraph.graphql, tools/supergraph.py) and calls the
// services' subgraphs through Envoy's subgraph listener (gateway/config.py), which balances
// their healthy instances and counts mutations against the global write limits.
//
// Run from this directory (the harness, tools/up.py, compose.yaml and the Kubernetes
// manifests do): node_modules/.bin/node node_modules/@graphql-hive/gateway/dist/bin.js
// supergraph. Settings from the environment:
//   PORT, HOST         where it listens (127.0.0.1:4000: only Envoy beside it should connect)
//   SUBGRAPHS_URL      the subgraph listener, e.g. http://127.0.0.1:8081 (the supergraph's
//                      URLs name compose.yaml's; this replaces their origin)
//   MAX_DEPTH, MAX_COST, MAX_TOKENS   the limits below
//   LOG_LEVEL, INSTANCE_ID             its JSON log lines
import { defineConfig, JSONLogWriter, Logger } from "@graphql-hive/gateway";
import { fileURLToPath } from "node:url";
import { GraphQLError } from "graphql";

const number = (name, fallback) => {
  const value = process.env[name];
  if (value === undefined || value === "") return fallback;
  const parsed = Number.parseInt(value, 10);
  if (!Number.isSafeInteger(parsed) || parsed <= 0) {
    throw new Error(`${name} must be a positive integer, not ${JSON.stringify(value)}`);
  }
  return parsed;
};

const subgraphs = process.env.SUBGRAPHS_URL ? new URL(process.env.SUBGRAPHS_URL) : null;

// What a client's request carries on to the subgraphs: the token (each subgraph verifies it,
// as the services do, and so does Envoy's subgraph listener, whose write limits count by its
// user), the client's address chain (they count by that too), the request and trace ids (one
// request's log lines and spans, across every process).
const PROPAGATED = [
  "authorization",
  "x-forwarded-for",
  "x-request-id",
  "traceparent",
  "tracestate",
];
// Set on the calls made for a mutation: Envoy's subgraph listener counts those as writes.
const OPERATION_HEADER = "x-ordermesh-graphql-operation";

/** Points each subgraph call at SUBGRAPHS_URL and marks a mutation's. */
const subgraphCalls = {
  onFetch({ url, setURL, options, setOptions, executionRequest }) {
    if (subgraphs !== null) {
      const target = new URL(url);
      target.protocol = subgraphs.protocol;
      target.host = subgraphs.host;
      setURL(target.toString());
    }
    if (executionRequest?.operationType === "mutation") {
      const headers = new Headers(options.headers);
      headers.set(OPERATION_HEADER, "mutation");
      setOptions({ ...options, headers: Object.fromEntries(headers) });
    }
  },
};

// Every error a client sees carries a gRPC status in `extensions` (`code`: its name,
// `grpcStatus`: its number), as the subgraphs' errors do (chassis.graphql); those the gateway
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
// graphql-armor's refusals (depth, tokens) say "Syntax Error: ..." and carry no code: they
// are the request's fault, answered 400.
const REFUSED = ["INVALID_ARGUMENT", 3];

const withStatus = (error) => {
  const extensions = error.extensions ?? {};
  if (extensions.grpcStatus !== undefined) return error;
  const [code, grpcStatus] = STATUS_OF_CODE[extensions.code] ?? REFUSED;
  const http = extensions.http ?? (extensions.code === undefined ? { status: 400 } : undefined);
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: {
      ...extensions,
      code,
      grpcStatus,
      ...(extensions.code ? { reason: extensions.code } : {}),
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
  supergraph: fileURLToPath(new URL("supergraph.graphql", import.meta.url)),
  // The schema is composed offline and never changes while the gateway runs.
  pollingInterval: 0,
  host: process.env.HOST || "127.0.0.1",
  port: number("PORT", 4000),
  graphqlEndpoint: "/graphql",
  landingPage: false,
  graphiql: false,
  // Refused before any subgraph is asked: too deep (me.orders.items.product.price.amountMinor
  // is 6), too many tokens, or too costly (each object costs 1, each list `first` of them,
  // or 10 where it has no `first`: 20 orders of 10 items with products cost about 600).
  maxDepth: number("MAX_DEPTH", 8),
  maxTokens: number("MAX_TOKENS", 1000),
  demandControl: { maxCost: number("MAX_COST", 5000), listSize: 10 },
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
  plugins: () => [subgraphCalls, statuses],
  upstreamTimeout: 10_000,
  // JSON lines with the service's name, as every process of the system writes them (`make logs`).
  logging: new Logger({
    level: (process.env.LOG_LEVEL || "info").toLowerCase(),
    attrs: { service: "graphql", instance: process.env.INSTANCE_ID || "graphql" },
    writers: [new JSONLogWriter()],
  }),
});
