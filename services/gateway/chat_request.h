// ConversationFromProto: a client's ChatPrompt, checked against the gateway's
// limits, as the conversation a chat template renders.
#ifndef LONGCTX_SERVICES_GATEWAY_CHAT_REQUEST_H_
#define LONGCTX_SERVICES_GATEWAY_CHAT_REQUEST_H_

#include "absl/status/statusor.h"
#include "model/folder/chat_prompt.h"
#include "proto/longctx.pb.h"
#include "services/gateway/gateway_limits.h"

namespace longctx {

// Deepest nesting of the JSON a client sends (tools, tool calls, template
// variables): far beyond any tool schema, and bounded so that nothing that
// walks it recursively can run out of stack.
inline constexpr int kMaxClientJsonDepth = 64;

// ParseClientJson parses JSON a client sent (`field` names it in errors),
// which must be of `type` ("array" or "object"): INVALID_ARGUMENT when it
// nests deeper than kMaxClientJsonDepth (checked before parsing), does not
// parse or is of another type.
absl::StatusOr<nlohmann::json> ParseClientJson(absl::string_view text,
                                               absl::string_view field,
                                               absl::string_view type);

// ConversationFromProto checks `prompt` before anything is built from it:
// INVALID_ARGUMENT for no messages, an empty role, JSON fields that do not
// parse, are not of their type (tools and tool_calls arrays, template
// variables an object), nest deeper than kMaxClientJsonDepth, or set a
// reserved variable; RESOURCE_EXHAUSTED for more than
// limits.max_chat_messages messages or more than limits.max_text_bytes bytes
// of strings in all. Errors name the field ("messages[3].tool_calls_json").
absl::StatusOr<Conversation> ConversationFromProto(const v1::ChatPrompt& prompt,
                                                   const GatewayLimits& limits);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_CHAT_REQUEST_H_
