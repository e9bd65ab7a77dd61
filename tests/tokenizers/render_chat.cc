// render_chat: the C++ side of the chat part of //tests/tokenizers:
// reference_test. Renders conversations with a model folder's chat template
// (ChatPromptRenderer, as the gateway does) and encodes the prompt with its
// tokenizer, printing per conversation the format of reference/chat.mjs:
//   {"ok": true, "text": "...", "ids": [...]} or {"ok": false, "error": "..."}
//
// Usage: render_chat MODEL_DIR CONVERSATIONS_JSON
#include <cstdio>
#include <string>

#include "model/folder/chat_prompt.h"
#include "model/folder/io_util.h"
#include "model/folder/model_config.h"
#include "model/folder/tokenizer.h"
#include "nlohmann/json.hpp"

namespace longctx {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "render_chat: %s\n", message.c_str());
  return 1;
}

int Main(int argc, char** argv) {
  if (argc != 3) return Fail("usage: render_chat MODEL_DIR CONVERSATIONS_JSON");
  const std::string dir = argv[1];
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(dir, *config);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
  absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> renderer =
      ChatPromptRenderer::Load(dir, **tokenizer);
  if (!renderer.ok()) return Fail(std::string(renderer.status().message()));
  if (*renderer == nullptr) return Fail(dir + " has no chat template");
  absl::StatusOr<std::string> text = ReadFile(argv[2]);
  if (!text.ok()) return Fail(std::string(text.status().message()));
  absl::StatusOr<nlohmann::json> conversations = ParseJson(*text, argv[2]);
  if (!conversations.ok() || !conversations->is_array()) {
    return Fail("conversations must be a JSON array");
  }
  for (const nlohmann::json& entry : *conversations) {
    Conversation conversation;
    conversation.messages = entry["messages"];
    conversation.add_generation_prompt = entry["add_generation_prompt"];
    absl::StatusOr<std::string> prompt =
        (*renderer)->Render(conversation, size_t{1} << 24);
    nlohmann::json line;
    if (!prompt.ok()) {
      line = {{"ok", false}, {"error", std::string(prompt.status().message())}};
    } else {
      absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode(*prompt);
      if (!ids.ok()) return Fail(std::string(ids.status().message()));
      line = {{"ok", true}, {"text", *prompt}, {"ids", *ids}};
    }
    std::printf("%s\n", line.dump().c_str());
  }
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) { return longctx::Main(argc, argv); }
