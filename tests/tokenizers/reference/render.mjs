// Reference chat-template renderer built on the independent JS Jinja
// implementation @huggingface/jinja (pinned in package.json); tests compare
// the C++ template engine against its output. Templates are parsed the way
// transformers does for chat templates (trim_blocks and lstrip_blocks on),
// with the globals raise_exception, strftime_now, range, namespace, true/
// false/none (and True/False/None).
//
// Usage: node render.mjs CASES_JSON
//
//   CASES_JSON  file holding a JSON array of
//               {"template": "<jinja source>", "context": {<variables>}}
//               e.g. context = {messages, add_generation_prompt, bos_token,
//               eos_token, tools, ...}; "context" may be omitted ({}).
//
// For each case, one JSON line on stdout, in order:
//   {"ok": true, "text": "<rendered text>"}   or
//   {"ok": false, "error": "<message>"}       (parse error, raise_exception,
//                                              or any other render error)
// Bad arguments, an unreadable or malformed CASES_JSON exit with status 1
// and a message on stderr.

import { readFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";

const PROG = "render.mjs";

function fail(message) {
  process.stderr.write(`${PROG}: error: ${message}\n`);
  process.exit(1);
}

function main(argv) {
  if (argv.length !== 1) {
    fail("usage: node render.mjs CASES_JSON");
  }
  const path = argv[0];
  let cases;
  try {
    cases = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    fail(`cannot load ${path}: ${e.message}`);
  }
  if (!Array.isArray(cases)) {
    fail(`${path} must hold a JSON array of {"template", "context"} objects`);
  }
  const lines = cases.map((c, i) => {
    if (c === null || typeof c !== "object" || typeof c.template !== "string") {
      fail(`case ${i}: expected an object with a string "template"`);
    }
    const context = c.context ?? {};
    if (context === null || typeof context !== "object" || Array.isArray(context)) {
      fail(`case ${i}: "context" must be an object`);
    }
    let out;
    try {
      out = { ok: true, text: new Template(c.template).render(context) };
    } catch (e) {
      out = { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
    return JSON.stringify(out);
  });
  process.stdout.write(lines.length ? lines.join("\n") + "\n" : "");
}

main(process.argv.slice(2));
