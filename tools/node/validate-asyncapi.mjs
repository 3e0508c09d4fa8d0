// Validates an AsyncAPI document with AsyncAPI's own parser and its protobuf schema parser:
// every payload's proto text is parsed too. Prints the diagnostics; fails on any error.
//
//     node tools/node/validate-asyncapi.mjs docs/asyncapi.yaml
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";
import { ProtoBuffSchemaParser } from "@asyncapi/protobuf-schema-parser";

const path = process.argv[2];
const parser = new Parser();
parser.registerSchemaParser(ProtoBuffSchemaParser());
const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"), {
  source: path,
});
for (const d of diagnostics) {
  const at = d.path && d.path.length ? ` at ${d.path.join(".")}` : "";
  console.log(`${DiagnosticSeverity[d.severity]}: ${d.code}: ${d.message}${at}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (document === undefined || errors.length) {
  console.error(`${path}: ${errors.length} error(s)`);
  process.exit(1);
}
const messages = document.components().messages().length;
const channels = document.channels().length;
const operations = document.operations().length;
console.log(`${path}: valid AsyncAPI ${document.version()}: ${channels} channels, ` +
  `${operations} operations, ${messages} messages with protobuf payloads parsed`);
