#include "services/gateway/chat_request.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

v1::ChatPrompt OneTurn(const std::string& content) {
  v1::ChatPrompt prompt;
  v1::ChatMessage* message = prompt.add_messages();
  message->set_role("user");
  message->set_content(content);
  return prompt;
}

TEST(ChatRequestTest, BuildsTheTemplatesMessages) {
  v1::ChatPrompt prompt = OneTurn("hi");
  v1::ChatMessage* call = prompt.add_messages();
  call->set_role("assistant");
  call->set_tool_calls_json(
      R"([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}])");
  v1::ChatMessage* answer = prompt.add_messages();
  answer->set_role("tool");
  answer->set_tool_call_id("c1");
  answer->set_content("42");
  prompt.set_tools_json(R"([{"type": "function", "function": {"name": "f"}}])");
  prompt.set_template_variables_json(R"({"enable_thinking": false})");
  prompt.set_add_generation_prompt(false);
  absl::StatusOr<Conversation> conversation =
      ConversationFromProto(prompt, GatewayLimits());
  ASSERT_TRUE(conversation.ok()) << conversation.status();
  EXPECT_EQ(conversation->messages.size(), 3u);
  EXPECT_EQ(conversation->messages[1]["tool_calls"][0]["function"]["name"],
            "f");
  EXPECT_EQ(conversation->messages[2]["tool_call_id"], "c1");
  EXPECT_FALSE(conversation->add_generation_prompt);
  EXPECT_EQ(conversation->tools.size(), 1u);
  EXPECT_EQ(conversation->variables["enable_thinking"], false);
  // add_generation_prompt defaults to true.
  conversation = ConversationFromProto(OneTurn("x"), GatewayLimits());
  ASSERT_TRUE(conversation.ok());
  EXPECT_TRUE(conversation->add_generation_prompt);
}

TEST(ChatRequestTest, LimitsBindBeforeAnythingIsBuilt) {
  GatewayLimits limits;
  limits.max_text_bytes = 100;
  limits.max_chat_messages = 3;
  absl::StatusOr<Conversation> conversation =
      ConversationFromProto(OneTurn(std::string(101, 'a')), limits);
  ASSERT_FALSE(conversation.ok());
  EXPECT_EQ(conversation.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(conversation.status().message(), HasSubstr("--max_text_bytes"));
  v1::ChatPrompt many = OneTurn("a");
  for (int i = 0; i < 3; ++i) *many.add_messages() = many.messages(0);
  conversation = ConversationFromProto(many, limits);
  ASSERT_FALSE(conversation.ok());
  EXPECT_THAT(conversation.status().message(),
              HasSubstr("--max_chat_messages"));
}

TEST(ChatRequestTest, HostileJsonIsRefusedByName) {
  const GatewayLimits limits;
  v1::ChatPrompt prompt = OneTurn("x");
  prompt.set_tools_json(std::string(100, '[') + std::string(100, ']'));
  absl::StatusOr<Conversation> conversation =
      ConversationFromProto(prompt, limits);
  ASSERT_FALSE(conversation.ok());
  EXPECT_THAT(conversation.status().message(),
              HasSubstr("tools_json nests deeper than 64"));
  // Brackets inside strings do not count.
  prompt.set_tools_json(R"([{"description": ")" + std::string(100, '[') +
                        R"("}])");
  EXPECT_TRUE(ConversationFromProto(prompt, limits).ok());
  prompt.set_tools_json(R"({"not": "an array"})");
  conversation = ConversationFromProto(prompt, limits);
  ASSERT_FALSE(conversation.ok());
  EXPECT_THAT(conversation.status().message(),
              HasSubstr("tools_json must be a JSON array"));
  prompt = OneTurn("x");
  prompt.set_template_variables_json(R"({"messages": []})");
  conversation = ConversationFromProto(prompt, limits);
  ASSERT_FALSE(conversation.ok());
  EXPECT_THAT(conversation.status().message(), HasSubstr("\"messages\""));
  prompt = OneTurn("x");
  prompt.mutable_messages(0)->clear_role();
  conversation = ConversationFromProto(prompt, limits);
  ASSERT_FALSE(conversation.ok());
  EXPECT_THAT(conversation.status().message(),
              HasSubstr("messages[0].role is empty"));
}

}  // namespace
}  // namespace longctx
