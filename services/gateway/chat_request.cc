#include "services/gateway/chat_request.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace longctx {
namespace {

// JsonDepth returns the deepest nesting of arrays and objects in `text`
// (strings skipped), without parsing it.
int JsonDepth(absl::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

absl::StatusOr<nlohmann::json> ParseClientJson(absl::string_view text,
                                               absl::string_view field,
                                               absl::string_view type) {
  if (JsonDepth(text) > kMaxClientJsonDepth) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " nests deeper than ", kMaxClientJsonDepth, " levels"));
  }
  nlohmann::json value =
      nlohmann::json::parse(text.begin(), text.end(), nullptr,
                            /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is not valid JSON"));
  }
  if ((type == "array" && !value.is_array()) ||
      (type == "object" && !value.is_object())) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be a JSON ", type));
  }
  return value;
}

absl::StatusOr<Conversation> ConversationFromProto(
    const v1::ChatPrompt& prompt, const GatewayLimits& limits) {
  if (prompt.messages().empty()) {
    return absl::InvalidArgumentError("messages is empty");
  }
  if (prompt.messages_size() > limits.max_chat_messages) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "messages has ", prompt.messages_size(), " turns; the limit is ",
        limits.max_chat_messages, " (--max_chat_messages)"));
  }
  // Every string counts against --max_text_bytes, before anything is built.
  size_t bytes =
      prompt.tools_json().size() + prompt.template_variables_json().size();
  for (const v1::ChatMessage& message : prompt.messages()) {
    bytes += message.role().size() + message.content().size() +
             message.name().size() + message.tool_call_id().size() +
             message.tool_calls_json().size();
  }
  if (bytes > static_cast<size_t>(limits.max_text_bytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("messages have ", bytes, " bytes of text; the limit is ",
                     limits.max_text_bytes, " (--max_text_bytes)"));
  }

  Conversation conversation;
  conversation.add_generation_prompt =
      !prompt.has_add_generation_prompt() || prompt.add_generation_prompt();
  for (int i = 0; i < prompt.messages_size(); ++i) {
    const v1::ChatMessage& message = prompt.messages(i);
    const std::string field = absl::StrCat("messages[", i, "]");
    if (message.role().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".role is empty"));
    }
    nlohmann::json turn = {{"role", message.role()},
                           {"content", message.content()}};
    if (!message.name().empty()) turn["name"] = message.name();
    if (!message.tool_call_id().empty()) {
      turn["tool_call_id"] = message.tool_call_id();
    }
    if (!message.tool_calls_json().empty()) {
      absl::StatusOr<nlohmann::json> calls = ParseClientJson(
          message.tool_calls_json(), field + ".tool_calls_json", "array");
      if (!calls.ok()) return calls.status();
      turn["tool_calls"] = *std::move(calls);
    }
    conversation.messages.push_back(std::move(turn));
  }
  if (!prompt.tools_json().empty()) {
    absl::StatusOr<nlohmann::json> tools =
        ParseClientJson(prompt.tools_json(), "tools_json", "array");
    if (!tools.ok()) return tools.status();
    conversation.tools = *std::move(tools);
  }
  if (!prompt.template_variables_json().empty()) {
    absl::StatusOr<nlohmann::json> variables = ParseClientJson(
        prompt.template_variables_json(), "template_variables_json", "object");
    if (!variables.ok()) return variables.status();
    for (const auto& item : variables->items()) {
      if (IsReservedChatVariable(item.key())) {
        return absl::InvalidArgumentError(
            absl::StrCat("template_variables_json sets \"", item.key(),
                         "\", which the server sets"));
      }
    }
    conversation.variables = *std::move(variables);
  }
  return conversation;
}

}  // namespace longctx
