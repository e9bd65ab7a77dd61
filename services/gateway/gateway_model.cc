#include "services/gateway/gateway_model.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/folder/model_config.h"
#include "services/gateway/chat_request.h"

namespace longctx {
namespace {

// DetokenizerStream adapts the tokenizer's incremental detokenizer to a
// TextStream.
class DetokenizerStream : public TextStream {
 public:
  explicit DetokenizerStream(const Tokenizer* tokenizer)
      : tokenizer_(tokenizer), detokenizer_(tokenizer->NewDetokenizer()) {}

  std::string Push(absl::Span<const int32_t> ids) override {
    return detokenizer_->Push(ids);
  }
  std::string Flush() override { return detokenizer_->Flush(); }
  std::string TokenText(int32_t id) override {
    return tokenizer_->TokenText(id);
  }

 private:
  const Tokenizer* tokenizer_;
  std::unique_ptr<IncrementalDetokenizer> detokenizer_;
};

std::string BaseName(const std::string& dir) {
  std::string trimmed = dir;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  size_t slash = trimmed.rfind('/');
  return slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GatewayModel>> GatewayModel::Load(
    const std::string& dir, const std::string& name) {
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "--model is required: the workers' model folder (config.json and "
        "tokenizer)");
  }
  auto prefixed = [&](const absl::Status& status) {
    return absl::Status(status.code(),
                        absl::StrCat("--model=", dir, ": ", status.message()));
  };
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  if (!config.ok()) return prefixed(config.status());
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(dir, *config);
  if (!tokenizer.ok()) return prefixed(tokenizer.status());
  if ((*tokenizer)->eos_ids().size() > kMaxEosTokenIds) {
    return prefixed(absl::InvalidArgumentError(absl::StrCat(
        "the tokenizer declares ", (*tokenizer)->eos_ids().size(),
        " end-of-sequence ids; at most ", kMaxEosTokenIds, " are supported")));
  }

  absl::StatusOr<GenerationConfig> generation =
      LoadGenerationConfig(dir, config->vocab_size);
  if (!generation.ok()) return prefixed(generation.status());
  absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> chat =
      ChatPromptRenderer::Load(dir, **tokenizer);
  if (!chat.ok()) return prefixed(chat.status());
  return Create(*config, *std::move(tokenizer),
                name.empty() ? BaseName(dir) : name, *generation,
                *std::move(chat));
}

std::unique_ptr<GatewayModel> GatewayModel::Create(
    const ModelConfig& config, std::unique_ptr<Tokenizer> tokenizer,
    const std::string& name, const GenerationConfig& generation,
    std::unique_ptr<ChatPromptRenderer> chat) {
  std::unique_ptr<GatewayModel> model(new GatewayModel());
  model->tokenizer_ = std::move(tokenizer);
  model->chat_ = std::move(chat);
  v1::ModelInfo& info = model->info_;
  info.set_name(name);
  info.set_architecture(config.architecture);
  info.set_vocab_size(config.vocab_size);
  info.set_num_layers(config.num_hidden_layers);
  info.set_hidden_size(config.hidden_size);
  info.set_num_attention_heads(config.num_attention_heads);
  info.set_num_kv_heads(config.num_key_value_heads);
  info.set_head_dim(config.head_dim);
  // torch_dtype names the checkpoint's dtype ("bfloat16"); report it in the
  // safetensors spelling.
  const std::string& dtype = config.torch_dtype;
  info.set_weight_dtype(dtype == "float32"    ? "F32"
                        : dtype == "float16"  ? "F16"
                        : dtype == "bfloat16" ? "BF16"
                                              : dtype);
  info.set_tokenizer(std::string(model->tokenizer_->kind()));
  // The tokenizer's eos ids, then generation_config.json's, each once.
  for (int32_t id : model->tokenizer_->eos_ids()) info.add_eos_token_ids(id);
  for (int id : generation.eos_token_ids) {
    if (std::find(info.eos_token_ids().begin(), info.eos_token_ids().end(),
                  id) == info.eos_token_ids().end()) {
      info.add_eos_token_ids(id);
    }
  }
  SamplingDefaults& defaults = model->defaults_;
  defaults.temperature = generation.DefaultTemperature(1.0f);
  defaults.top_p = generation.top_p.value_or(1.0f);
  defaults.top_k = generation.top_k.value_or(0);
  defaults.max_new_tokens = generation.max_new_tokens.value_or(0);
  info.mutable_default_sampling()->set_temperature(defaults.temperature);
  info.mutable_default_sampling()->set_top_p(defaults.top_p);
  info.mutable_default_sampling()->set_top_k(defaults.top_k);
  info.set_bos_token_id(model->tokenizer_->bos_id().value_or(-1));
  info.set_chat_template(model->chat_ != nullptr);
  return model;
}

absl::StatusOr<std::string> GatewayModel::RenderChat(
    const v1::ChatPrompt& prompt, const GatewayLimits& limits) const {
  if (chat_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model \"", info_.name(),
        "\" has no chat template (tokenizer_config.json \"chat_template\" or "
        "chat_template.jinja): send text or token_ids"));
  }
  absl::StatusOr<Conversation> conversation =
      ConversationFromProto(prompt, limits);
  if (!conversation.ok()) return conversation.status();
  if (limits.refuse_special_tokens_in_messages) {
    for (int i = 0; i < prompt.messages_size(); ++i) {
      const v1::ChatMessage& message = prompt.messages(i);
      for (const auto& [field, text] :
           {std::pair<const char*, const std::string*>{"content",
                                                       &message.content()},
            {"name", &message.name()}}) {
        if (std::optional<std::string> special =
                tokenizer_->FindSpecialToken(*text)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "messages[", i, "].", field, " holds the special token \"",
              *special, "\" (--refuse_special_tokens_in_messages)"));
        }
      }
    }
  }
  return chat_->Render(*conversation,
                       static_cast<size_t>(limits.max_text_bytes));
}

absl::StatusOr<ValidatedRequest> GatewayModel::PrepareRequest(
    const v1::GenerateRequest& request, const GatewayLimits& limits,
    uint64_t random_seed) const {
  absl::StatusOr<ValidatedRequest> validated =
      ValidateGenerateRequest(request, info_, limits, random_seed, defaults_);
  if (!validated.ok()) return validated.status();
  // The prompt goes straight into the worker request: one copy of the ids.
  google::protobuf::RepeatedField<int32_t>& prompt =
      *validated->worker_request.mutable_prompt_token_ids();
  if (request.has_token_ids()) {
    // Token ids are checked before they are copied.
    const google::protobuf::RepeatedField<int32_t>& ids =
        request.token_ids().ids();
    absl::Status checked =
        CheckPromptTokens(absl::MakeConstSpan(ids.data(), ids.size()), info_,
                          limits, "token_ids.ids");
    if (!checked.ok()) return checked;
    prompt = ids;
    return validated;
  }
  std::string rendered;
  if (request.has_messages()) {
    absl::StatusOr<std::string> text = RenderChat(request.messages(), limits);
    if (!text.ok()) return text.status();
    rendered = *std::move(text);
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      Encode(request.has_messages() ? rendered : request.text());
  if (!ids.ok()) return ids.status();
  const bool bos = request.add_bos() && info_.bos_token_id() >= 0;
  prompt.Reserve(static_cast<int>(ids->size()) + (bos ? 1 : 0));
  if (bos) prompt.Add(info_.bos_token_id());
  prompt.Add(ids->begin(), ids->end());
  absl::Status checked = CheckPromptTokens(
      absl::MakeConstSpan(prompt.data(), prompt.size()), info_, limits,
      request.has_messages() ? "messages" : "text");
  if (!checked.ok()) return checked;
  return validated;
}

absl::StatusOr<std::vector<int32_t>> GatewayModel::Encode(
    absl::string_view text) const {
  return tokenizer_->Encode(text);
}

std::unique_ptr<TextStream> GatewayModel::NewTextStream() const {
  return std::make_unique<DetokenizerStream>(tokenizer_.get());
}

}  // namespace longctx
