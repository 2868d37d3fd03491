// Lints a schema file with eslint.config.mjs; prints one line per problem, exits 1 if any.
// usage: node lint-schema.mjs path/to/schema.graphql
import path from "node:path";
import { fileURLToPath } from "node:url";

import { ESLint } from "eslint";

const file = path.resolve(process.argv[2]);
process.env.GRAPHQL_SCHEMA = file; // read by eslint.config.mjs
const eslint = new ESLint({
  cwd: path.dirname(file),
  overrideConfigFile: fileURLToPath(new URL("./eslint.config.mjs", import.meta.url)),
});
const problems = (await eslint.lintFiles([file])).flatMap((r) => r.messages);
for (const p of problems) {
  const level = p.severity === 2 ? "error" : "warning";
  console.log(`${path.basename(file)}:${p.line}:${p.column} ${level} ${p.ruleId ?? ""} ${p.message}`);
}
console.log(`${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
