// Composes a Federation v2 supergraph from subgraph schemas with The Guild's open-source
// composition (MIT; Apollo's is under the Elastic licence). Reads a JSON list of
// {"name", "url", "sdl"} on stdin; writes the supergraph's SDL on stdout, or each composition
// error on stderr and fails.
//
//     python -m tools.supergraph  (runs it: make gen)
import { readFileSync } from "node:fs";
import { parse } from "graphql";
import { composeServices } from "@theguild/federation-composition";

const subgraphs = JSON.parse(readFileSync(0, "utf8"));
const result = composeServices(
  subgraphs.map(({ name, url, sdl }) => ({ name, url, typeDefs: parse(sdl) })),
);
if (result.errors && result.errors.length) {
  for (const error of result.errors) {
    const code = error.extensions && error.extensions.code ? `${error.extensions.code}: ` : "";
    console.error(`${code}${error.message}`);
  }
  process.exit(1);
}
process.stdout.write(result.supergraphSdl.trimEnd() + "\n");
