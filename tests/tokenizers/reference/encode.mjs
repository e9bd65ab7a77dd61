// Reference encoder for Hugging Face tokenizer.json files, built on the
// independent JS implementation @huggingface/tokenizers (pinned in
// package.json). Tests compare the C++ tokenizer against its output.
//
// Usage: node encode.mjs TOKENIZER_DIR CORPUS_JSON
//
//   TOKENIZER_DIR  directory holding tokenizer.json and, optionally,
//                  tokenizer_config.json (treated as {} when missing).
//   CORPUS_JSON    file holding a JSON array of base64 strings (arbitrary
//                  bytes). Bytes are decoded as UTF-8 with replacement: each
//                  maximal invalid subsequence becomes U+FFFD; a leading
//                  UTF-8 BOM is kept as U+FEFF (ignoreBOM), not stripped.
//
// For each corpus entry, one JSON object per line on stdout:
//   {"ids": [...],          encode(text, {add_special_tokens: false}).ids
//    "ids_special": [...],  encode(text, {add_special_tokens: true}).ids
//    "decoded": "...",      decode(ids, {skip_special_tokens: false})
//    "decoded_skip": "..."} decode(ids_special, {skip_special_tokens: true})
// Decoding always passes clean_up_tokenization_spaces: false (plain
// tokenizer.json semantics; the library would otherwise default it to
// tokenizer_config.json's value, or true when absent). Decoding an empty id
// list yields "" (the library throws on it).
//
// Any error (bad arguments, unreadable/invalid files, non-base64 entries, a
// token without an id) exits with status 1 and a message on stderr.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const PROG = "encode.mjs";

function fail(message) {
  process.stderr.write(`${PROG}: error: ${message}\n`);
  process.exit(1);
}

function readJson(path, what) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    fail(`cannot read ${what} ${path}: ${e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    fail(`invalid JSON in ${what} ${path}: ${e.message}`);
  }
}

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64(s, index) {
  if (typeof s !== "string") {
    fail(`corpus entry ${index} is not a string`);
  }
  const buf = Buffer.from(s, "base64");
  // Buffer.from silently skips junk; insist on a clean round trip.
  if (!BASE64_RE.test(s) || buf.toString("base64").replace(/=+$/, "") !== s.replace(/=+$/, "")) {
    fail(`corpus entry ${index} is not valid base64`);
  }
  return buf;
}

function checkIds(ids, tokens, index, what) {
  ids.forEach((id, k) => {
    if (!Number.isInteger(id)) {
      fail(`corpus entry ${index}: ${what}: token ${JSON.stringify(tokens[k])} has no id (no unk_token?)`);
    }
  });
}

function main(argv) {
  if (argv.length !== 2) {
    fail("usage: node encode.mjs TOKENIZER_DIR CORPUS_JSON");
  }
  const [dir, corpusPath] = argv;
  const tokenizerJson = readJson(join(dir, "tokenizer.json"), "tokenizer");
  let config = {};
  try {
    readFileSync(join(dir, "tokenizer_config.json"));
    config = readJson(join(dir, "tokenizer_config.json"), "tokenizer config");
  } catch (e) {
    if (e.code !== "ENOENT") fail(`cannot read ${join(dir, "tokenizer_config.json")}: ${e.message}`);
  }
  const corpus = readJson(corpusPath, "corpus");
  if (!Array.isArray(corpus)) {
    fail(`corpus ${corpusPath} must be a JSON array of base64 strings`);
  }

  let tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, config);
  } catch (e) {
    fail(`cannot construct Tokenizer from ${dir}: ${e.message}`);
  }

  const utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  const decode = (ids, skip) =>
    ids.length === 0
      ? ""
      : tokenizer.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });

  const lines = [];
  corpus.forEach((entry, i) => {
    const text = utf8.decode(decodeBase64(entry, i));
    try {
      const plain = tokenizer.encode(text, { add_special_tokens: false });
      const special = tokenizer.encode(text, { add_special_tokens: true });
      checkIds(plain.ids, plain.tokens, i, "ids");
      checkIds(special.ids, special.tokens, i, "ids_special");
      lines.push(
        JSON.stringify({
          ids: plain.ids,
          ids_special: special.ids,
          decoded: decode(plain.ids, false),
          decoded_skip: decode(special.ids, true),
        }),
      );
    } catch (e) {
      fail(`corpus entry ${i}: ${e.stack ?? e}`);
    }
  });
  process.stdout.write(lines.length ? lines.join("\n") + "\n" : "");
}

main(process.argv.slice(2));
