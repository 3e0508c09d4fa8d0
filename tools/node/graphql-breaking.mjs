// What a GraphQL schema breaks of an earlier one (graphql-js's own findBreakingChanges: a type
// or field removed, a type changed, an argument made required, ...): one line each on stdout,
// and fails if there is any. Dangerous changes (a default value changed, an enum value added)
// are printed and pass.
//
//     node tools/node/graphql-breaking.mjs EARLIER.graphql LATER.graphql
import { readFileSync } from "node:fs";
import { buildSchema, findBreakingChanges, findDangerousChanges } from "graphql";

const [earlier, later] = process.argv.slice(2).map((path) =>
  buildSchema(readFileSync(path, "utf8"), { assumeValidSDL: true }),
);
for (const change of findDangerousChanges(earlier, later)) {
  console.log(`dangerous: ${change.type}: ${change.description}`);
}
const breaking = findBreakingChanges(earlier, later);
for (const change of breaking) {
  console.log(`breaking: ${change.type}: ${change.description}`);
}
process.exit(breaking.length ? 1 : 0);
