#include "model/folder/generation_config.h"

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/testing/temp_dir.h"

namespace longctx {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// As Llama 3.1 Instruct ships it.
TEST(GenerationConfigTest, ReadsLlama3Style) {
  auto config = ParseGenerationConfig(
      R"({"bos_token_id": 128000, "do_sample": true,
          "eos_token_id": [128001, 128008, 128009],
          "temperature": 0.6, "top_p": 0.9,
          "transformers_version": "4.42.3"})",
      "gc.json", 128256);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_FLOAT_EQ(config->DefaultTemperature(1.0f), 0.6f);
  EXPECT_FLOAT_EQ(*config->top_p, 0.9f);
  EXPECT_FALSE(config->top_k.has_value());
}

// As Qwen2.5 Instruct ships it (repetition_penalty is ignored).
TEST(GenerationConfigTest, ReadsQwenStyle) {
  auto config = ParseGenerationConfig(
      R"({"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": true,
          "eos_token_id": [151645, 151643], "repetition_penalty": 1.05,
          "temperature": 0.7, "top_p": 0.8, "top_k": 20})",
      "gc.json", 152064);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->eos_token_ids, ElementsAre(151645, 151643));
  EXPECT_EQ(*config->top_k, 20);
}

TEST(GenerationConfigTest, GreedyWhenNotSampling) {
  auto config = ParseGenerationConfig(
      R"({"do_sample": false, "temperature": 0.9, "eos_token_id": 2,
          "max_new_tokens": 512})",
      "gc.json", 100);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->DefaultTemperature(1.0f), 0.0f);
  EXPECT_THAT(config->eos_token_ids, ElementsAre(2));
  EXPECT_EQ(*config->max_new_tokens, 512);
  // Nothing said: the caller's fallback.
  EXPECT_EQ(GenerationConfig().DefaultTemperature(1.0f), 1.0f);
}

TEST(GenerationConfigTest, BadFieldsAreRefusedNamingThem) {
  for (const auto& [json, field] :
       std::vector<std::pair<std::string, std::string>>{
           {R"({"eos_token_id": 100})", "eos_token_id"},
           {R"({"eos_token_id": [1, -1]})", "eos_token_id"},
           {R"({"eos_token_id": "2"})", "eos_token_id"},
           {R"({"temperature": -0.5})", "temperature"},
           {R"({"top_p": 0})", "top_p"},
           {R"({"top_p": 1.5})", "top_p"},
           {R"({"top_k": -3})", "top_k"},
           {R"({"do_sample": "yes"})", "do_sample"},
           {R"({"max_new_tokens": 0})", "max_new_tokens"},
           {R"([1, 2])", "top level"},
           {R"({"temperature": )", "malformed JSON"}}) {
    auto config = ParseGenerationConfig(json, "gc.json", 100);
    ASSERT_FALSE(config.ok()) << json;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr(field)) << json;
    EXPECT_THAT(config.status().message(), HasSubstr("gc.json")) << json;
  }
}

TEST(GenerationConfigTest, AFolderWithoutOneGivesAnEmptyConfig) {
  const std::string dir = testing::NewTempDir("generation_config");
  auto none = LoadGenerationConfig(dir, 100);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->eos_token_ids.empty());
  EXPECT_FALSE(none->temperature.has_value());
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": 7})";
  auto some = LoadGenerationConfig(dir, 100);
  ASSERT_TRUE(some.ok()) << some.status();
  EXPECT_THAT(some->eos_token_ids, ElementsAre(7));
}

// A hostile folder: a huge generation_config.json is refused by its size,
// before it is read.
TEST(GenerationConfigTest, AFileOverTheLimitIsRefusedUnread) {
  const std::string dir = testing::NewTempDir("generation_config_huge");
  {
    std::ofstream file(dir + "/generation_config.json");
    file << "{\"eos_token_id\": ["
         << std::string(kMaxGenerationConfigBytes, ' ') << "7]}";
  }
  auto config = LoadGenerationConfig(dir, 100);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("larger than 1048576"));
}

}  // namespace
}  // namespace longctx
