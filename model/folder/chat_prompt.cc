#include "model/folder/chat_prompt.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/folder/io_util.h"

namespace longctx {
namespace {

constexpr const char* kSpecialNames[] = {"bos_token", "eos_token", "unk_token",
                                         "pad_token"};

}  // namespace

bool IsReservedChatVariable(absl::string_view name) {
  if (name == "messages" || name == "add_generation_prompt" ||
      name == "tools") {
    return true;
  }
  for (const char* special : kSpecialNames) {
    if (name == special) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> ChatPromptRenderer::Load(
    const std::string& model_dir, const Tokenizer& tokenizer) {
  nlohmann::json config;
  const std::string config_path = JoinPath(model_dir, "tokenizer_config.json");
  if (PathExists(config_path)) {
    absl::StatusOr<std::string> text = ReadFile(config_path);
    if (!text.ok()) return text.status();
    absl::StatusOr<nlohmann::json> parsed = ParseJson(*text, config_path);
    if (!parsed.ok()) return parsed.status();
    config = *std::move(parsed);
  }
  std::string source, origin;
  const auto it =
      config.is_object() ? config.find("chat_template") : config.end();
  if (it != config.end() && !it->is_null()) {
    origin = config_path + " chat_template";
    if (it->is_string()) {
      source = it->get<std::string>();
    } else if (it->is_array()) {
      bool found = false;
      for (const nlohmann::json& entry : *it) {
        if (entry.is_object() && entry.value("name", "") == "default" &&
            entry.contains("template") && entry["template"].is_string()) {
          source = entry["template"].get<std::string>();
          found = true;
        }
      }
      if (!found) {
        return absl::InvalidArgumentError(absl::StrCat(
            origin, ": a list of templates without one named \"default\""));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": must be a string or a list of templates"));
    }
  } else {
    const std::string jinja_path = JoinPath(model_dir, "chat_template.jinja");
    if (!PathExists(jinja_path)) return nullptr;
    absl::StatusOr<std::string> text = ReadFile(jinja_path, size_t{1} << 20);
    if (!text.ok()) return text.status();
    source = *std::move(text);
    origin = jinja_path;
  }

  nlohmann::json specials = nlohmann::json::object();
  for (const char* name : kSpecialNames) {
    if (std::optional<std::string> text =
            TokenizerConfigSpecialToken(config, name)) {
      specials[name] = *text;
    }
  }
  if (!specials.contains("bos_token") && tokenizer.bos_id().has_value()) {
    specials["bos_token"] = tokenizer.TokenText(*tokenizer.bos_id());
  }
  if (!specials.contains("eos_token") && !tokenizer.eos_ids().empty()) {
    specials["eos_token"] = tokenizer.TokenText(tokenizer.eos_ids().front());
  }
  return FromSource(source, std::move(specials), origin);
}

absl::StatusOr<std::unique_ptr<ChatPromptRenderer>>
ChatPromptRenderer::FromSource(absl::string_view source,
                               nlohmann::json specials,
                               const std::string& origin) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed =
      ChatTemplate::Parse(source);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat(origin, ": ", parsed.status().message()));
  }
  std::unique_ptr<ChatPromptRenderer> renderer(new ChatPromptRenderer());
  renderer->template_ = *std::move(parsed);
  renderer->specials_ = std::move(specials);
  renderer->origin_ = origin;
  return renderer;
}

absl::StatusOr<std::string> ChatPromptRenderer::Render(
    const Conversation& conversation, size_t max_output_bytes) const {
  nlohmann::json context = nlohmann::json::object();
  if (conversation.variables.is_object()) {
    for (const auto& [name, value] : conversation.variables.items()) {
      if (IsReservedChatVariable(name)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "chat template variable \"", name, "\" is set by the server"));
      }
      context[name] = value;
    }
  }
  for (const auto& [name, value] : specials_.items()) context[name] = value;
  context["messages"] = conversation.messages;
  context["add_generation_prompt"] = conversation.add_generation_prompt;
  if (!conversation.tools.is_null()) context["tools"] = conversation.tools;
  ChatTemplateLimits limits;
  limits.max_output_bytes = max_output_bytes;
  absl::StatusOr<std::string> prompt = template_->Render(context, limits);
  if (!prompt.ok()) {
    return absl::Status(
        prompt.status().code(),
        absl::StrCat("chat template: ", prompt.status().message()));
  }
  return prompt;
}

}  // namespace longctx
