// Chat prompts and tokenizer.json end to end: a stack serving tiny models
// whose folders are laid out like Hub checkpoints (make_tiny_model
// --tokenizer=llama3|qwen2|mistral: tokenizer.json, tokenizer_config.json
// with a chat template, generation_config.json), called through the gateway.
// The prompts and ids are checked against the model folder read in-process
// (whose tokenizer and templates //tests/tokenizers and //tests/chat_templates
// compare with independent implementations).
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "model/folder/chat_prompt.h"
#include "model/folder/model_config.h"
#include "model/folder/tokenizer.h"
#include "proto/longctx.grpc.pb.h"
#include "tests/testing/generate.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

v1::ChatPrompt Turns(
    const std::vector<std::pair<std::string, std::string>>& turns) {
  v1::ChatPrompt prompt;
  for (const auto& [role, content] : turns) {
    v1::ChatMessage* message = prompt.add_messages();
    message->set_role(role);
    message->set_content(content);
  }
  return prompt;
}

// The folder's own rendering and ids, read in-process.
struct Expected {
  std::string prompt;
  std::vector<int32_t> ids;
};

Expected Expect(const std::string& model_dir, const v1::ChatPrompt& prompt) {
  Expected expected;
  absl::StatusOr<ModelConfig> config = LoadModelConfig(model_dir);
  EXPECT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(model_dir, *config);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> renderer =
      ChatPromptRenderer::Load(model_dir, **tokenizer);
  EXPECT_TRUE(renderer.ok()) << renderer.status();
  EXPECT_NE(*renderer, nullptr);
  Conversation conversation;
  conversation.add_generation_prompt =
      !prompt.has_add_generation_prompt() || prompt.add_generation_prompt();
  for (const v1::ChatMessage& message : prompt.messages()) {
    conversation.messages.push_back(
        {{"role", message.role()}, {"content", message.content()}});
  }
  absl::StatusOr<std::string> text = (*renderer)->Render(conversation, 1 << 20);
  EXPECT_TRUE(text.ok()) << text.status();
  expected.prompt = *text;
  expected.ids = *(*tokenizer)->Encode(*text);
  return expected;
}

class ChatTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    testing::StackOptions options;
    options.model_flags = {absl::StrCat("--tokenizer=", GetParam()),
                           "--tokenizer_merges=600"};
    absl::Status status = stack_.Start(options);
    ASSERT_TRUE(status.ok()) << status;
    stub_ = v1::LongContext::NewStub(grpc::CreateChannel(
        stack_.gateway().address(), grpc::InsecureChannelCredentials()));
  }

  testing::LocalStack stack_;
  std::unique_ptr<v1::LongContext::Stub> stub_;
};

TEST_P(ChatTest, ServesTextAndChatPromptsWithTheFoldersTokenizerAndTemplate) {
  grpc::ClientContext info_context;
  v1::ModelInfo info;
  ASSERT_TRUE(
      stub_->GetModelInfo(&info_context, v1::GetModelInfoRequest(), &info)
          .ok());
  EXPECT_EQ(info.tokenizer(), "tokenizer.json");
  EXPECT_TRUE(info.chat_template());
  EXPECT_FALSE(info.eos_token_ids().empty());

  const v1::ChatPrompt prompt =
      Turns({{"system", "You answer briefly."},
             {"user", "What is in chapter 3?  \xE4\xBD\xA0\xE5\xA5\xBD"},
             {"assistant", "A storm \xF0\x9F\x8C\xA7 at sea."},
             {"user", "And after it?\n\nSay it in one line."}});
  const Expected expected = Expect(stack_.model_dir(), prompt);
  ASSERT_FALSE(expected.ids.empty());

  // Tokenize shows the exact prompt and its ids.
  grpc::ClientContext tokenize_context;
  v1::TokenizeRequest tokenize;
  *tokenize.mutable_messages() = prompt;
  v1::TokenizeResponse tokenized;
  grpc::Status status =
      stub_->Tokenize(&tokenize_context, tokenize, &tokenized);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tokenized.prompt_text(), expected.prompt);
  EXPECT_EQ(std::vector<int32_t>(tokenized.token_ids().begin(),
                                 tokenized.token_ids().end()),
            expected.ids);
  // The template's end-of-turn token became its id, not its characters.
  bool has_end_of_turn = false;
  for (int32_t eos : info.eos_token_ids()) {
    for (int32_t id : expected.ids) has_end_of_turn |= id == eos;
  }
  EXPECT_TRUE(has_end_of_turn);

  // Generate with the messages: the prompt is those ids, and the streamed
  // text is the tokens' text.
  v1::GenerateRequest request;
  *request.mutable_messages() = prompt;
  request.mutable_sampling()->set_temperature(0);
  request.mutable_stopping()->set_max_new_tokens(24);
  request.mutable_stopping()->set_ignore_eos(true);
  testing::GenerateResult chat = testing::Generate(*stub_, request);
  ASSERT_TRUE(chat.status.ok()) << chat.status.error_message() << stack_.Logs();
  EXPECT_EQ(chat.last.usage().prompt_tokens(),
            static_cast<int>(expected.ids.size()));
  EXPECT_EQ(chat.tokens.size(), 24u);

  // The same ids sent as token_ids continue the same way.
  v1::GenerateRequest by_ids = request;
  for (int32_t id : expected.ids) by_ids.mutable_token_ids()->add_ids(id);
  testing::GenerateResult same = testing::Generate(*stub_, by_ids);
  ASSERT_TRUE(same.status.ok());
  EXPECT_EQ(same.tokens, chat.tokens);
  EXPECT_EQ(same.text, chat.text);

  // A stop string inside the streamed text cuts it there.
  size_t at = chat.text.size() / 2;
  while (at < chat.text.size() &&
         (static_cast<unsigned char>(chat.text[at]) & 0xC0) == 0x80) {
    ++at;
  }
  if (at > 0 && at < chat.text.size()) {
    const std::string stop = chat.text.substr(at, 1);
    v1::GenerateRequest stopped_request = request;
    stopped_request.mutable_stopping()->add_stop_sequences(stop);
    testing::GenerateResult stopped =
        testing::Generate(*stub_, stopped_request);
    ASSERT_TRUE(stopped.status.ok());
    EXPECT_EQ(stopped.last.finish_reason(), v1::FINISH_REASON_STOP_SEQUENCE);
    EXPECT_EQ(stopped.text, chat.text.substr(0, chat.text.find(stop)));
  }

  // Text prompts go through the same tokenizer.
  v1::GenerateRequest text = request;
  text.set_text(expected.prompt);
  testing::GenerateResult by_text = testing::Generate(*stub_, text);
  ASSERT_TRUE(by_text.status.ok());
  EXPECT_EQ(by_text.tokens, chat.tokens);
}

TEST_P(ChatTest, TheClientsSendChatTurns) {
  const v1::ChatPrompt prompt =
      Turns({{"system", "Be brief."}, {"user", "a chat from python"}});
  const Expected expected = Expect(stack_.model_dir(), prompt);
  std::string output;
  auto rc = testing::RunCommand(
      {"/usr/bin/python3",
       testing::RunfilePath("tools/clients/python/longctx_client.py"),
       "--address=" + stack_.gateway().address(), "--max-new-tokens=5",
       "--temperature=0", "--ignore-eos", "--chat", "--system=Be brief.",
       "a chat from python"},
      "", &output);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 0) << output;
  EXPECT_THAT(output, HasSubstr(absl::StrCat("prompt ", expected.ids.size(),
                                             " tokens")));
  output.clear();
  rc = testing::RunCommand(
      {testing::RunfilePath("tools/clients/cpp/generate"),
       "--address=" + stack_.gateway().address(), "--max_new_tokens=5",
       "--temperature=0", "--ignore_eos", "--chat", "--system=Be brief."},
      "a chat from python", &output);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 0) << output;
  EXPECT_THAT(output, HasSubstr(absl::StrCat("prompt ", expected.ids.size(),
                                             " tokens")));
}

TEST_P(ChatTest, BadConversationsGetClearStatuses) {
  v1::GenerateRequest request;
  request.mutable_stopping()->set_max_new_tokens(2);
  // No turns.
  request.mutable_messages();
  testing::GenerateResult r = testing::Generate(*stub_, request);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("messages is empty"));
  // Tool calls that are not JSON.
  *request.mutable_messages() = Turns({{"user", "hi"}});
  request.mutable_messages()->mutable_messages(0)->set_tool_calls_json("[{");
  r = testing::Generate(*stub_, request);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(),
              HasSubstr("messages[0].tool_calls_json is not valid JSON"));
  // A variable the server sets.
  *request.mutable_messages() = Turns({{"user", "hi"}});
  request.mutable_messages()->set_template_variables_json(
      R"({"bos_token": "<evil>"})");
  r = testing::Generate(*stub_, request);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("bos_token"));
  if (std::string(GetParam()) == "mistral") {
    // The template refuses roles that do not alternate.
    *request.mutable_messages() = Turns({{"user", "one"}, {"user", "two"}});
    r = testing::Generate(*stub_, request);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(r.status.error_message(),
                HasSubstr("chat template: raise_exception: roles must "
                          "alternate"));
  }
  // Still serving.
  *request.mutable_messages() = Turns({{"user", "hi"}});
  r = testing::Generate(*stub_, request);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
}

INSTANTIATE_TEST_SUITE_P(Families, ChatTest,
                         ::testing::Values("llama3", "qwen2", "mistral"));

TEST(ChatWithoutTemplateTest, ByteModelRefusesMessagesAndSaysWhy) {
  testing::LocalStack stack;
  ASSERT_TRUE(stack.Start({}).ok());
  v1::GenerateRequest request;
  *request.mutable_messages() = Turns({{"user", "hi"}});
  testing::GenerateResult r =
      testing::Generate(stack.gateway().address(), request);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("has no chat template"));
}

}  // namespace
}  // namespace longctx
