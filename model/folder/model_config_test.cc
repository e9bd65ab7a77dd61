#include "model/folder/model_config.h"

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/folder/io_util.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

// The config.json of Llama 3.1 8B, as published.
constexpr char kLlama31Config[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// A Qwen2 config: no attention_bias field (Qwen2 always has q/k/v biases).
constexpr char kQwen2Config[] = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 21,
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// The smallest config: only the required fields.
constexpr char kMinimalConfig[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 4, "vocab_size": 258
})";

std::string Replace(std::string text, const std::string& from,
                    const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

void ExpectInvalid(const std::string& json, const std::string& substring) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(json, "test.json");
  ASSERT_FALSE(config.ok()) << json;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr(substring));
  EXPECT_THAT(config.status().message(), HasSubstr("test.json"));
}

TEST(ModelConfigTest, ParsesLlama31WithLlama3RopeScaling) {
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(kLlama31Config, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, "LlamaForCausalLM");
  EXPECT_EQ(config->hidden_size, 4096);
  EXPECT_EQ(config->intermediate_size, 14336);
  EXPECT_EQ(config->num_hidden_layers, 32);
  EXPECT_EQ(config->num_attention_heads, 32);
  EXPECT_EQ(config->num_key_value_heads, 8);
  EXPECT_EQ(config->head_dim, 128);
  EXPECT_EQ(config->q_size(), 4096);
  EXPECT_EQ(config->kv_size(), 1024);
  EXPECT_EQ(config->vocab_size, 128256);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(config->rope_theta, 500000.0);
  ASSERT_TRUE(config->rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(config->rope_scaling->factor, 8.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling->low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(config->rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_EQ(config->max_position_embeddings, 131072);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FALSE(config->attention_bias);
  EXPECT_EQ(config->torch_dtype, "bfloat16");
  EXPECT_EQ(config->bos_token_id, 128000);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
}

TEST(ModelConfigTest, Qwen2HasAttentionBiasByDefault) {
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(kQwen2Config, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->attention_bias);
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_EQ(config->head_dim, 64);
  EXPECT_EQ(config->eos_token_ids, std::vector<int>{151645});
  EXPECT_FALSE(config->rope_scaling.has_value());

  absl::StatusOr<ModelConfig> without_bias =
      ParseModelConfig(Replace(kQwen2Config, "\"bos_token_id\"",
                               "\"attention_bias\": false, \"bos_token_id\""),
                       "config.json");
  ASSERT_TRUE(without_bias.ok()) << without_bias.status();
  EXPECT_FALSE(without_bias->attention_bias);
}

TEST(ModelConfigTest, AbsentFieldsTakeTheArchitectureDefaults) {
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(kMinimalConfig, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->head_dim, 16);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(config->rope_theta, 10000.0);
  EXPECT_EQ(config->max_position_embeddings, 2048);
  EXPECT_FALSE(config->rope_scaling.has_value());
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FALSE(config->attention_bias);
  EXPECT_FALSE(config->bos_token_id.has_value());
  EXPECT_TRUE(config->eos_token_ids.empty());
  EXPECT_TRUE(config->torch_dtype.empty());

  absl::StatusOr<ModelConfig> mistral = ParseModelConfig(
      Replace(kMinimalConfig, "LlamaForCausalLM", "MistralForCausalLM"),
      "config.json");
  ASSERT_TRUE(mistral.ok()) << mistral.status();
  EXPECT_EQ(mistral->max_position_embeddings, 131072);
}

TEST(ModelConfigTest, ExplicitHeadDimAndNullsAreAccepted) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(
      Replace(kMinimalConfig, "\"vocab_size\": 258",
              "\"vocab_size\": 258, \"head_dim\": 32, \"rope_scaling\": null, "
              "\"eos_token_id\": null, \"bos_token_id\": null, "
              "\"sliding_window\": null"),
      "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->head_dim, 32);
  EXPECT_EQ(config->q_size(), 128);
  EXPECT_FALSE(config->rope_scaling.has_value());
}

TEST(ModelConfigTest, OldStyleRopeScalingTypeKeyIsAccepted) {
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(Replace(kLlama31Config, "\"rope_type\": \"llama3\"",
                               "\"type\": \"llama3\""),
                       "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->rope_scaling.has_value());
}

TEST(ModelConfigTest, RejectsUnsupportedArchitecture) {
  ExpectInvalid(Replace(kMinimalConfig, "LlamaForCausalLM", "GPT2LMHeadModel"),
                "unsupported architecture \"GPT2LMHeadModel\"");
  ExpectInvalid(Replace(kMinimalConfig, "[\"LlamaForCausalLM\"]", "[]"),
                "architectures");
  ExpectInvalid(
      Replace(kMinimalConfig, "\"architectures\": [\"LlamaForCausalLM\"],", ""),
      "architectures is required but missing");
}

TEST(ModelConfigTest, RejectsUnsupportedRopeScaling) {
  ExpectInvalid(Replace(kLlama31Config, "\"rope_type\": \"llama3\"",
                        "\"rope_type\": \"yarn\""),
                "rope_scaling type \"yarn\" is not supported");
  ExpectInvalid(Replace(kLlama31Config, "\"factor\": 8.0,", ""),
                "rope_scaling.factor is required but missing");
  ExpectInvalid(Replace(kLlama31Config, "\"high_freq_factor\": 4.0",
                        "\"high_freq_factor\": 0.5"),
                "rope_scaling.high_freq_factor");
}

TEST(ModelConfigTest, RejectsMalformedJson) {
  ExpectInvalid("{\"architectures\": [\"LlamaForCausalLM\"", "malformed JSON");
  ExpectInvalid("", "malformed JSON");
  ExpectInvalid("[1, 2]", "expected a JSON object");
}

TEST(ModelConfigTest, RejectsFieldsOfTheWrongType) {
  ExpectInvalid(
      Replace(kMinimalConfig, "\"hidden_size\": 64", "\"hidden_size\": \"64\""),
      "hidden_size must be an integer, got string");
  ExpectInvalid(
      Replace(kMinimalConfig, "\"hidden_size\": 64", "\"hidden_size\": 64.5"),
      "hidden_size must be an integer");
  ExpectInvalid(Replace(kMinimalConfig, "\"hidden_size\": 64",
                        "\"hidden_size\": 99999999999"),
                "hidden_size is out of range");
  ExpectInvalid(Replace(kLlama31Config, "\"tie_word_embeddings\": false",
                        "\"tie_word_embeddings\": 0"),
                "tie_word_embeddings must be true or false");
  ExpectInvalid(Replace(kLlama31Config, "\"rms_norm_eps\": 1e-05",
                        "\"rms_norm_eps\": \"small\""),
                "rms_norm_eps must be a number");
  ExpectInvalid(
      Replace(kLlama31Config, "[128001, 128008, 128009]", "[128001, \"eos\"]"),
      "eos_token_id must be an integer");
}

TEST(ModelConfigTest, DeeplyNestedValuesAreRejectedWithoutCrashing) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  ExpectInvalid(Replace(kMinimalConfig, "\"hidden_size\": 64",
                        "\"hidden_size\": " + deep),
                "hidden_size must be an integer, got array [[[[...]]]]");
  ExpectInvalid(std::string(200000, '{'), "malformed JSON");
}

TEST(ModelConfigTest, RejectsInconsistentSizes) {
  ExpectInvalid(Replace(kMinimalConfig, "\"num_hidden_layers\": 2",
                        "\"num_hidden_layers\": 0"),
                "num_hidden_layers must be positive, got 0");
  ExpectInvalid(Replace(kMinimalConfig, "\"vocab_size\": 258",
                        "\"vocab_size\": 258, \"num_key_value_heads\": 3"),
                "num_attention_heads 4 is not a multiple of "
                "num_key_value_heads 3");
  ExpectInvalid(
      Replace(kMinimalConfig, "\"hidden_size\": 64", "\"hidden_size\": 66"),
      "hidden_size 66 is not a multiple of num_attention_heads 4");
  ExpectInvalid(Replace(kMinimalConfig, "\"vocab_size\": 258",
                        "\"vocab_size\": 258, \"head_dim\": 15"),
                "head_dim 15 must be even");
  ExpectInvalid(Replace(kMinimalConfig, "\"intermediate_size\": 128,", ""),
                "intermediate_size is required but missing");
  ExpectInvalid(Replace(kMinimalConfig, "\"vocab_size\": 258",
                        "\"vocab_size\": 258, \"rope_theta\": -1"),
                "rope_theta must be positive");
  ExpectInvalid(Replace(kMinimalConfig, "\"vocab_size\": 258",
                        "\"vocab_size\": 258, \"eos_token_id\": 258"),
                "eos_token_id 258 is outside the vocabulary [0, 258)");
}

TEST(ModelConfigTest, RejectsFeaturesLongctxDoesNotImplement) {
  ExpectInvalid(Replace(kLlama31Config, "\"hidden_act\": \"silu\"",
                        "\"hidden_act\": \"gelu\""),
                "hidden_act \"gelu\" is not supported");
  ExpectInvalid(
      Replace(kLlama31Config, "\"mlp_bias\": false", "\"mlp_bias\": true"),
      "mlp_bias true is not supported");
  ExpectInvalid(Replace(kQwen2Config, "\"use_sliding_window\": false",
                        "\"use_sliding_window\": true"),
                "use_sliding_window true is not supported");
  ExpectInvalid(
      Replace(Replace(kMinimalConfig, "LlamaForCausalLM", "MistralForCausalLM"),
              "\"vocab_size\": 258",
              "\"vocab_size\": 258, \"sliding_window\": 4096"),
      "sliding_window 4096 is not supported");
}

TEST(ModelConfigTest, ToJsonReadsBackToTheSameConfig) {
  for (const char* text : {kLlama31Config, kQwen2Config, kMinimalConfig}) {
    absl::StatusOr<ModelConfig> config = ParseModelConfig(text, "a.json");
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<ModelConfig> again =
        ParseModelConfig(ModelConfigToJson(*config), "b.json");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->architecture, config->architecture);
    EXPECT_EQ(again->hidden_size, config->hidden_size);
    EXPECT_EQ(again->intermediate_size, config->intermediate_size);
    EXPECT_EQ(again->num_hidden_layers, config->num_hidden_layers);
    EXPECT_EQ(again->num_attention_heads, config->num_attention_heads);
    EXPECT_EQ(again->num_key_value_heads, config->num_key_value_heads);
    EXPECT_EQ(again->head_dim, config->head_dim);
    EXPECT_EQ(again->vocab_size, config->vocab_size);
    EXPECT_EQ(again->rms_norm_eps, config->rms_norm_eps);
    EXPECT_EQ(again->rope_theta, config->rope_theta);
    EXPECT_EQ(again->rope_scaling.has_value(),
              config->rope_scaling.has_value());
    EXPECT_EQ(again->max_position_embeddings, config->max_position_embeddings);
    EXPECT_EQ(again->tie_word_embeddings, config->tie_word_embeddings);
    EXPECT_EQ(again->attention_bias, config->attention_bias);
    EXPECT_EQ(again->torch_dtype, config->torch_dtype);
    EXPECT_EQ(again->bos_token_id, config->bos_token_id);
    EXPECT_EQ(again->eos_token_ids, config->eos_token_ids);
  }
}

TEST(LoadModelConfigTest, MissingConfigJsonIsNotFoundNamingThePath) {
  const std::string dir = ::testing::TempDir() + "/no_config_here";
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(),
              HasSubstr("no_config_here/config.json: not found"));
}

TEST(LoadModelConfigTest, ReadsConfigJsonOfAFolder) {
  const std::string dir = ::testing::TempDir();
  ASSERT_TRUE(
      WriteFileAtomically(JoinPath(dir, "config.json"), kQwen2Config).ok());
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, "Qwen2ForCausalLM");
}

}  // namespace
}  // namespace longctx
