#include "model/folder/chat_prompt.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/folder/io_util.h"
#include "model/folder/model_config.h"
#include "model/folder/tokenizer.h"
#include "services/common/testing/temp_dir.h"
#include "tools/make_tiny_model/tiny_model.h"

namespace longctx {
namespace {

using ::longctx::testing::NewTempDir;
using ::testing::HasSubstr;
using json = nlohmann::json;

struct Folder {
  std::string dir;
  std::unique_ptr<Tokenizer> tokenizer;
};

Folder MakeFolder(const std::string& family) {
  Folder folder;
  folder.dir = NewTempDir("chat_" + family);
  TinyModelOptions options;
  options.tokenizer = family;
  options.tokenizer_merges = 200;
  EXPECT_TRUE(WriteTinyModel(options, folder.dir).ok());
  absl::StatusOr<ModelConfig> config = LoadModelConfig(folder.dir);
  EXPECT_TRUE(config.ok());
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(folder.dir, *config);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  folder.tokenizer = *std::move(tokenizer);
  return folder;
}

Conversation Turns(
    std::initializer_list<std::pair<const char*, const char*>> turns) {
  Conversation conversation;
  for (const auto& [role, content] : turns) {
    conversation.messages.push_back({{"role", role}, {"content", content}});
  }
  return conversation;
}

TEST(ChatPromptTest, Llama3LayoutRendersHeadersAndTheGenerationPrompt) {
  Folder folder = MakeFolder("llama3");
  absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> renderer =
      ChatPromptRenderer::Load(folder.dir, *folder.tokenizer);
  ASSERT_TRUE(renderer.ok()) << renderer.status();
  ASSERT_NE(*renderer, nullptr);
  absl::StatusOr<std::string> prompt = (*renderer)->Render(
      Turns({{"system", " Be brief. "}, {"user", "Hi there "}}), 1 << 20);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
            "Hi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
            "\n\n");
  Conversation no_prompt = Turns({{"user", "x"}});
  no_prompt.add_generation_prompt = false;
  prompt = (*renderer)->Render(no_prompt, 1 << 20);
  ASSERT_TRUE(prompt.ok());
  EXPECT_EQ(*prompt,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
            "x<|eot_id|>");
}

TEST(ChatPromptTest, TemplateErrorsAndLimitsAreClear) {
  Folder folder = MakeFolder("mistral");
  absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> renderer =
      ChatPromptRenderer::Load(folder.dir, *folder.tokenizer);
  ASSERT_TRUE(renderer.ok()) << renderer.status();
  absl::StatusOr<std::string> prompt =
      (*renderer)->Render(Turns({{"user", "a"}, {"user", "b"}}), 1 << 20);
  ASSERT_FALSE(prompt.ok());
  EXPECT_EQ(prompt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      prompt.status().message(),
      HasSubstr("chat template: raise_exception: roles must alternate"));
  prompt = (*renderer)->Render(Turns({{"user", "hello"}}), 1 << 20);
  ASSERT_TRUE(prompt.ok());
  EXPECT_EQ(*prompt, "<s>[INST] hello[/INST]");
  // The rendered prompt is bounded.
  prompt = (*renderer)->Render(Turns({{"user", "hello"}}), 8);
  ASSERT_FALSE(prompt.ok());
  EXPECT_EQ(prompt.status().code(), absl::StatusCode::kResourceExhausted);
  // Reserved variables cannot be replaced.
  Conversation evil = Turns({{"user", "hello"}});
  evil.variables = {{"eos_token", "</s><s>"}};
  prompt = (*renderer)->Render(evil, 1 << 20);
  ASSERT_FALSE(prompt.ok());
  EXPECT_THAT(prompt.status().message(), HasSubstr("eos_token"));
}

TEST(ChatPromptTest, TemplateFileListFormAndNone) {
  Folder folder = MakeFolder("qwen2");
  // A list of named templates: "default" is used.
  const std::string config_path = JoinPath(folder.dir, "tokenizer_config.json");
  json config = json::parse(*ReadFile(config_path));
  config["chat_template"] = json::array(
      {{{"name", "tool_use"}, {"template", "tools"}},
       {{"name", "default"}, {"template", "{{ messages[0].content }}!"}}});
  ASSERT_TRUE(WriteFileAtomically(config_path, config.dump()).ok());
  absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> renderer =
      ChatPromptRenderer::Load(folder.dir, *folder.tokenizer);
  ASSERT_TRUE(renderer.ok()) << renderer.status();
  EXPECT_EQ(*(*renderer)->Render(Turns({{"user", "yo"}}), 1 << 20), "yo!");
  // No template in the config: chat_template.jinja, else none.
  config.erase("chat_template");
  ASSERT_TRUE(WriteFileAtomically(config_path, config.dump()).ok());
  renderer = ChatPromptRenderer::Load(folder.dir, *folder.tokenizer);
  ASSERT_TRUE(renderer.ok());
  EXPECT_EQ(*renderer, nullptr);
  ASSERT_TRUE(WriteFileAtomically(JoinPath(folder.dir, "chat_template.jinja"),
                                  "{{ eos_token }}|{{ messages | length }}")
                  .ok());
  renderer = ChatPromptRenderer::Load(folder.dir, *folder.tokenizer);
  ASSERT_TRUE(renderer.ok());
  ASSERT_NE(*renderer, nullptr);
  EXPECT_EQ(
      *(*renderer)->Render(Turns({{"user", "a"}, {"assistant", "b"}}), 1 << 20),
      "<|im_end|>|2");
  // A template that does not parse names its file.
  ASSERT_TRUE(WriteFileAtomically(JoinPath(folder.dir, "chat_template.jinja"),
                                  "{% for m in messages %}")
                  .ok());
  renderer = ChatPromptRenderer::Load(folder.dir, *folder.tokenizer);
  ASSERT_FALSE(renderer.ok());
  EXPECT_THAT(renderer.status().message(), HasSubstr("chat_template.jinja"));
}

}  // namespace
}  // namespace longctx
