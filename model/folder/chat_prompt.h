// ChatPromptRenderer: a model folder's chat template (tokenizer_config.json
// "chat_template", or chat_template.jinja) with the variables Hugging Face
// templates expect — messages, add_generation_prompt, tools, bos_token,
// eos_token (and unk_token, pad_token when the folder names them) — turning
// a conversation into the model's prompt text.
#ifndef LONGCTX_MODEL_FOLDER_CHAT_PROMPT_H_
#define LONGCTX_MODEL_FOLDER_CHAT_PROMPT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/chat_template.h"
#include "model/folder/tokenizer.h"
#include "nlohmann/json.hpp"

namespace longctx {

// A conversation to render.
struct Conversation {
  // A JSON array of message objects ({"role", "content", ...}).
  nlohmann::json messages = nlohmann::json::array();
  bool add_generation_prompt = true;
  // A JSON array of tool definitions, or null for none.
  nlohmann::json tools;
  // Further variables (a JSON object, or null); they may not replace the
  // ones above or the special tokens' (the caller checks with
  // IsReservedChatVariable).
  nlohmann::json variables;
};

// IsReservedChatVariable reports whether `name` is one of the variables the
// renderer sets itself.
bool IsReservedChatVariable(absl::string_view name);

// ChatPromptRenderer is immutable; Render is thread-safe.
class ChatPromptRenderer {
 public:
  // Load returns the chat template of `model_dir`, or nullptr when it has
  // none: tokenizer_config.json's "chat_template" (a string, or a list of
  // {"name", "template"} of which "default" is used), else the file
  // chat_template.jinja. The special tokens' texts come from
  // tokenizer_config.json ("bos_token", ... as strings or {"content"}), else
  // from `tokenizer`'s ids. INVALID_ARGUMENT naming the file when the
  // template does not parse or is malformed.
  static absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> Load(
      const std::string& model_dir, const Tokenizer& tokenizer);

  // FromSource parses a template given as text; `origin` names it in errors.
  // `specials` maps variable names ("bos_token", ...) to their texts.
  static absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> FromSource(
      absl::string_view source, nlohmann::json specials,
      const std::string& origin);

  // Render returns the prompt. INVALID_ARGUMENT "chat template: <problem>"
  // when the template fails (e.g. its raise_exception on roles it does not
  // accept); RESOURCE_EXHAUSTED when the prompt would pass
  // `max_output_bytes` or the template's other limits.
  absl::StatusOr<std::string> Render(const Conversation& conversation,
                                     size_t max_output_bytes) const;

 private:
  ChatPromptRenderer() = default;

  std::unique_ptr<ChatTemplate> template_;
  nlohmann::json specials_;  // Object: bos_token, eos_token, ...
  std::string origin_;
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_CHAT_PROMPT_H_
