// The official OpenAI Node SDK (pinned in package.json) against longctx's
// OpenAI-compatible HTTP API: completions and chat completions, whole and
// streamed, usage with cached tokens, and an error the SDK raises as its
// own error type. Run by //tests:openai_http_test against a stack whose
// model has a chat template.
//
// Usage: node sdk_test.mjs BASE_URL API_KEY
// Prints one line per check; exits 1 at the first failure.

import OpenAI from "openai";

function check(condition, message) {
  if (!condition) {
    process.stderr.write(`FAIL: ${message}\n`);
    process.exit(1);
  }
  process.stdout.write(`ok: ${message}\n`);
}

const [baseURL, apiKey] = process.argv.slice(2);
if (!baseURL || !apiKey) {
  process.stderr.write("usage: node sdk_test.mjs BASE_URL API_KEY\n");
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });

const models = await client.models.list();
const model = models.data[0].id;
check(typeof model === "string" && model.length > 0, `models.list names the model (${model})`);

const completion = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 6, temperature: 0, ignore_eos: true,
});
check(completion.choices[0].text.length > 0 && completion.usage.completion_tokens === 6,
      "completions.create returns text and usage");

let streamed = "";
let chunks = 0;
const stream = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 6, temperature: 0, ignore_eos: true,
  stream: true,
});
for await (const chunk of stream) {
  chunks += 1;
  streamed += chunk.choices[0]?.text ?? "";
}
check(chunks >= 2 && streamed === completion.choices[0].text,
      "a streamed completion equals the whole one");

const messages = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "What is in chapter 3?" },
];
const chat = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, ignore_eos: true,
});
const answer = chat.choices[0].message.content;
check(chat.choices[0].message.role === "assistant" && chat.usage.completion_tokens === 8,
      "chat.completions.create answers as the assistant");

let deltas = "";
let usage = null;
const chatStream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, ignore_eos: true, stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of chatStream) {
  deltas += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
check(deltas === answer && usage?.completion_tokens === 8,
      "a streamed chat equals the whole answer and reports usage");

const document = Array.from({ length: 300 }, (_, i) => `Clause ${i} binds the parties.`).join(" ");
await client.completions.create({ model, prompt: document, max_tokens: 2 });
const again = await client.completions.create({ model, prompt: document, max_tokens: 2 });
check(again.usage.prompt_tokens_details?.cached_tokens > 0,
      `a long document's second request reports cached tokens (${again.usage.prompt_tokens_details?.cached_tokens})`);

try {
  await client.completions.create({ model, prompt: "x", n: 2 });
  check(false, "n = 2 is refused");
} catch (error) {
  check(error instanceof OpenAI.BadRequestError && error.status === 400 &&
        error.param === "n", `n = 2 is refused: ${error.status} ${error.message}`);
}
try {
  await new OpenAI({ baseURL, apiKey: "not-a-token", maxRetries: 0 }).models.list();
  check(false, "a wrong key is refused");
} catch (error) {
  check(error instanceof OpenAI.AuthenticationError && error.status === 401,
        "a wrong key is refused with 401");
}
