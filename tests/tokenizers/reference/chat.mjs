// Reference for a model folder's chat prompts: renders conversations with the
// folder's chat template (tokenizer_config.json "chat_template", special
// tokens from its bos_token / eos_token / unk_token / pad_token) by
// @huggingface/jinja, and encodes the prompt with the folder's tokenizer.json
// by @huggingface/tokenizers (no special tokens added: the template writes
// them), as the transformers library's apply_chat_template(tokenize=True) does.
//
// Usage: node chat.mjs MODEL_DIR CONVERSATIONS_JSON
//
//   CONVERSATIONS_JSON  a JSON array of {"messages": [...],
//                       "add_generation_prompt": bool}
//
// For each conversation, one JSON line: {"ok": true, "text": "...", "ids": [...]}
// or {"ok": false, "error": "..."} when the template raises or fails.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";

function fail(message) {
  process.stderr.write(`chat.mjs: error: ${message}\n`);
  process.exit(1);
}

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    fail(`cannot load ${path}: ${e.message}`);
  }
}

function specialText(config, key) {
  const value = config[key];
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof value.content === "string") {
    return value.content;
  }
  return undefined;
}

const argv = process.argv.slice(2);
if (argv.length !== 2) fail("usage: node chat.mjs MODEL_DIR CONVERSATIONS_JSON");
const [dir, conversationsPath] = argv;
const config = readJson(join(dir, "tokenizer_config.json"));
if (typeof config.chat_template !== "string") {
  fail(`${dir}/tokenizer_config.json has no chat_template string`);
}
const template = new Template(config.chat_template);
const tokenizer = new Tokenizer(readJson(join(dir, "tokenizer.json")), config);
const conversations = readJson(conversationsPath);
if (!Array.isArray(conversations)) fail("conversations must be a JSON array");

const lines = conversations.map((conversation) => {
  const context = {
    messages: conversation.messages,
    add_generation_prompt: conversation.add_generation_prompt,
  };
  for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const text = specialText(config, key);
    if (text !== undefined) context[key] = text;
  }
  try {
    const text = template.render(context);
    const ids = text.length ? tokenizer.encode(text, { add_special_tokens: false }).ids : [];
    return JSON.stringify({ ok: true, text, ids });
  } catch (e) {
    return JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) });
  }
});
process.stdout.write(lines.length ? lines.join("\n") + "\n" : "");
