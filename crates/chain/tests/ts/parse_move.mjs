// Parses every Move source under a directory with Mysten's Move grammar, the one behind
// @mysten/prettier-plugin-move (tree-sitter-move). No Move compiler can be installed on our CI
// machines, so this is the check that contracts/ at least parse; it does not type-check.
//
//   node parse_move.mjs <dir>
//
// Exits 0 and prints how many files parsed, or exits 1 naming each file that did not parse
// and the plugin's account of where. The formatted output is discarded: formatting is not
// enforced, only parsing.

import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

import * as prettier from "prettier";

const require = createRequire(import.meta.url);
const plugin = require.resolve("@mysten/prettier-plugin-move");

async function moveFiles(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    // `build/` holds the Sui CLI's copies of dependencies' sources; they are not ours.
    if (entry.isDirectory() && entry.name !== "build" && !entry.name.startsWith(".")) {
      out.push(...(await moveFiles(p)));
    } else if (entry.isFile() && entry.name.endsWith(".move")) {
      out.push(p);
    }
  }
  return out.sort();
}

// The plugin reports the text of the node that failed, not its position; find that text in
// the source to give a line number (the first occurrence, so it can be early for short
// snippets, but never later than the failure).
function where(source, error) {
  const m = /```\n([\s\S]*)\n```/.exec(error);
  const at = m && m[1].trim() ? source.indexOf(m[1]) : -1;
  return at < 0 ? "" : `:${source.slice(0, at).split("\n").length}`;
}

async function main() {
  const dir = process.argv[2];
  if (!dir) {
    console.error("usage: node parse_move.mjs <directory with .move files>");
    process.exit(2);
  }
  let files;
  try {
    files = await moveFiles(dir);
  } catch (e) {
    console.error(`parse_move: cannot read ${dir}: ${e.message}`);
    process.exit(1);
  }
  if (files.length === 0) {
    // An empty run must not pass for a successful one (a wrong path, a moved package).
    console.error(`parse_move: no .move files under ${dir}`);
    process.exit(1);
  }
  const failures = [];
  for (const file of files) {
    const source = await readFile(file, "utf8");
    try {
      await prettier.format(source, { parser: "move", plugins: [plugin], filepath: file });
    } catch (e) {
      const error = String(e && e.message ? e.message : e);
      failures.push({ file: `${file}${where(source, error)}`, error });
    }
  }
  for (const { file, error } of failures) {
    console.error(`parse_move: ${file} does not parse:\n${error}\n`);
  }
  if (failures.length > 0) {
    console.error(`parse_move: ${failures.length} of ${files.length} Move files under ${dir} failed to parse`);
    process.exit(1);
  }
  console.log(`parse_move: ${files.length} Move files under ${dir} parsed`);
}

await main();
