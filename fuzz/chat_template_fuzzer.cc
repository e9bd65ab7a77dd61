// Fuzz target: chat templates (model/chat_template), which come from model
// folders and render client messages at the gateway.
//
// Input: a template's source. It is parsed; when it parses, it is rendered
// with a fixed conversation (system, user, assistant and tool turns, tool
// calls, tools, the special tokens) under small limits.
//
// Properties checked: Parse and Render return a status on any input (no
// crash, no hang: the step limit binds); a rendering that succeeds is within
// the output limit; rendering twice gives the same text (templates are
// deterministic: strftime_now aside, which the seeds do not use).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_check.h"
#include "model/chat_template/chat_template.h"
#include "nlohmann/json.hpp"

namespace longctx {
namespace {

const nlohmann::json& Context() {
  static const nlohmann::json* context =
      new nlohmann::json(nlohmann::json::parse(R"({
  "messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is in chapter 3?  <|im_end|>"},
    {"role": "assistant", "content": "",
     "tool_calls": [{"id": "c1", "type": "function",
                     "function": {"name": "lookup", "arguments": "{\"q\": 3}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "A storm."},
    {"role": "user", "content": [{"type": "text", "text": "And then?"}]}
  ],
  "tools": [{"type": "function", "function": {"name": "lookup",
             "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}}}}],
  "add_generation_prompt": true,
  "bos_token": "<s>",
  "eos_token": "</s>"
})"));
  return *context;
}

}  // namespace
}  // namespace longctx

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longctx;
  if (size > 16384) return 0;
  const std::string source(reinterpret_cast<const char*>(data), size);
  if (source.find("strftime_now") != std::string::npos) return 0;
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed =
      ChatTemplate::Parse(source);
  if (!parsed.ok()) return 0;
  ChatTemplateLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_steps = 200000;
  limits.max_depth = 64;
  absl::StatusOr<std::string> first = (*parsed)->Render(Context(), limits);
  absl::StatusOr<std::string> second = (*parsed)->Render(Context(), limits);
  FUZZ_CHECK(first.ok() == second.ok(), "rendering twice: ok then not");
  if (first.ok()) {
    FUZZ_CHECK(first->size() <= limits.max_output_bytes,
               "output of %zu bytes past the limit", first->size());
    FUZZ_CHECK(*first == *second, "rendering twice gave different text");
  }
  return 0;
}
