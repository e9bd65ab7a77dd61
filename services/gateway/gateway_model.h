// GatewayModel: what the gateway needs of the model folder — its description
// and its tokenizer (never the weights).
#ifndef LONGCTX_SERVICES_GATEWAY_GATEWAY_MODEL_H_
#define LONGCTX_SERVICES_GATEWAY_GATEWAY_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/folder/chat_prompt.h"
#include "model/folder/generation_config.h"
#include "model/folder/model_config.h"
#include "model/folder/tokenizer.h"
#include "proto/longctx.pb.h"
#include "services/gateway/gateway_limits.h"
#include "services/gateway/request_validator.h"
#include "services/gateway/text_stream.h"

namespace longctx {

// GatewayModel is immutable after Load and thread-safe.
class GatewayModel {
 public:
  // Load reads config.json, generation_config.json (when present), the
  // tokenizer and the chat template (when present) of `dir`. `name`
  // overrides the model's name (default: the folder's last component).
  // Errors name --model.
  static absl::StatusOr<std::unique_ptr<GatewayModel>> Load(
      const std::string& dir, const std::string& name);

  // Create is Load without the folder: the model described by `config`
  // (already validated) with `tokenizer`, called `name`.
  // The eos ids are those of the tokenizer and of `generation` (the folder's
  // generation_config.json), whose sampling values become the defaults of
  // requests that leave them unset.
  // `chat` renders chat prompts (none: they are refused).
  static std::unique_ptr<GatewayModel> Create(
      const ModelConfig& config, std::unique_ptr<Tokenizer> tokenizer,
      const std::string& name,
      const GenerationConfig& generation = GenerationConfig(),
      std::unique_ptr<ChatPromptRenderer> chat = nullptr);

  // The model's description; limits, groups and the fingerprint (which the
  // workers report: the gateway never reads the weights) are left unset.
  const v1::ModelInfo& info() const { return info_; }

  // Encode tokenizes text (no special tokens added); INTERNAL if the tokenizer
  // library fails.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const;

  // RenderChat renders a chat prompt with the model's template: the prompt
  // text. INVALID_ARGUMENT when the model has no chat template; the
  // errors of ConversationFromProto and of the template (INVALID_ARGUMENT
  // "chat template: ...", RESOURCE_EXHAUSTED past limits.max_text_bytes);
  // INVALID_ARGUMENT naming the message and the token when
  // limits.refuse_special_tokens_in_messages and a message's content or
  // name holds a special token's text.
  absl::StatusOr<std::string> RenderChat(const v1::ChatPrompt& prompt,
                                         const GatewayLimits& limits) const;

  // PrepareRequest turns a public request into the worker's: it validates
  // the request (ValidateGenerateRequest), renders a chat prompt
  // (RenderChat), tokenizes its text (after the bos token when add_bos is
  // set and the model has one) or takes its token ids, and checks the prompt
  // (CheckPromptTokens). Only the request id is left to set. Errors are
  // those of the steps.
  absl::StatusOr<ValidatedRequest> PrepareRequest(
      const v1::GenerateRequest& request, const GatewayLimits& limits,
      uint64_t random_seed) const;

  // NewTextStream starts the detokenization of one request's output.
  std::unique_ptr<TextStream> NewTextStream() const;

 private:
  GatewayModel() = default;

  v1::ModelInfo info_;
  SamplingDefaults defaults_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatPromptRenderer> chat_;  // Null: no chat template.
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_GATEWAY_MODEL_H_
