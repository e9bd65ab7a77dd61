#include "tools/make_tiny_model/tiny_model.h"

#include <cstdlib>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/folder/generation_config.h"
#include "model/folder/io_util.h"
#include "model/folder/model_config.h"
#include "model/folder/safetensors.h"
#include "nlohmann/json.hpp"
#include "services/common/testing/temp_dir.h"

namespace longctx {
namespace {

using ::longctx::testing::NewTempDir;
using ::testing::HasSubstr;

std::string Contents(const std::string& path) {
  absl::StatusOr<std::string> content = ReadFile(path);
  EXPECT_TRUE(content.ok()) << content.status();
  return content.ok() ? *content : "";
}

TEST(TinyModelTest, SameOptionsGiveByteIdenticalFiles) {
  TinyModelOptions options;
  options.dtype = kernels::DType::kBf16;
  const std::string a = NewTempDir("same_a"), b = NewTempDir("same_b");
  ASSERT_TRUE(WriteTinyModel(options, a).ok());
  ASSERT_TRUE(WriteTinyModel(options, b).ok());
  for (const char* file :
       {"config.json", "model.safetensors", "tokenizer_config.json"}) {
    EXPECT_EQ(Contents(JoinPath(a, file)), Contents(JoinPath(b, file))) << file;
  }
  options.seed = 2;
  ASSERT_TRUE(WriteTinyModel(options, b).ok());
  EXPECT_NE(Contents(JoinPath(a, "model.safetensors")),
            Contents(JoinPath(b, "model.safetensors")));
}

TEST(TinyModelTest, ConfigDescribesTheModel) {
  TinyModelOptions options;
  options.tie_word_embeddings = true;
  options.attention_bias = true;
  options.dtype = kernels::DType::kF16;
  const std::string dir = NewTempDir("config");
  ASSERT_TRUE(WriteTinyModel(options, dir).ok());
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, "LlamaForCausalLM");
  EXPECT_EQ(config->hidden_size, 64);
  EXPECT_EQ(config->intermediate_size, 128);
  EXPECT_EQ(config->num_hidden_layers, 2);
  EXPECT_EQ(config->num_attention_heads, 4);
  EXPECT_EQ(config->num_key_value_heads, 2);
  EXPECT_EQ(config->head_dim, 16);
  EXPECT_EQ(config->vocab_size, 258);
  EXPECT_EQ(config->max_position_embeddings, 131072);
  EXPECT_EQ(config->rope_theta, 500000.0);
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_TRUE(config->attention_bias);
  EXPECT_EQ(config->torch_dtype, "float16");
  EXPECT_EQ(config->bos_token_id, 256);
  EXPECT_EQ(config->eos_token_ids, std::vector<int>{257});
  absl::StatusOr<GenerationConfig> generation =
      LoadGenerationConfig(dir, config->vocab_size);
  ASSERT_TRUE(generation.ok()) << generation.status();
  EXPECT_EQ(generation->eos_token_ids, std::vector<int>{257});
  EXPECT_EQ(generation->DefaultTemperature(0.5f), 1.0f);

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(JoinPath(dir, "model.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Find("lm_head.weight"), nullptr);  // Tied.
  ASSERT_NE((*file)->Find("model.layers.1.self_attn.v_proj.bias"), nullptr);
  for (const SafetensorsTensor& tensor : (*file)->tensors()) {
    EXPECT_EQ(tensor.dtype, "F16") << tensor.name;
  }
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_THAT(Contents(JoinPath(dir, "tokenizer_config.json")),
              HasSubstr("LongctxByteTokenizer"));
}

TEST(TinyModelTest, ShardsSplitTheTensorsAndTheIndexListsThemAll) {
  TinyModelOptions options;
  options.shards = 4;
  const std::string dir = NewTempDir("shards");
  ASSERT_TRUE(WriteTinyModel(options, dir).ok());
  absl::StatusOr<nlohmann::json> index =
      ParseJson(Contents(JoinPath(dir, "model.safetensors.index.json")), "x");
  ASSERT_TRUE(index.ok());
  std::set<std::string> files;
  uint64_t total = 0;
  size_t tensors = 0;
  for (auto it = (*index)["weight_map"].begin();
       it != (*index)["weight_map"].end(); ++it) {
    files.insert(it->get<std::string>());
    ++tensors;
  }
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(*files.begin(), "model-00001-of-00004.safetensors");
  for (const std::string& name : files) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(JoinPath(dir, name));
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_FALSE((*file)->tensors().empty());
    for (const SafetensorsTensor& t : (*file)->tensors()) total += t.size_bytes;
  }
  EXPECT_EQ(tensors, 2u * 9u + 3u);  // 9 per layer, embed, norm, lm_head.
  EXPECT_EQ((*index)["metadata"]["total_size"].get<uint64_t>(), total);
}

TEST(TinyModelTest, PresetsHaveTheDocumentedSizes) {
  absl::StatusOr<TinyModelOptions> s = TinyModelPreset("S");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->hidden_size, 512);
  EXPECT_EQ(s->num_layers, 8);
  EXPECT_EQ(s->num_heads, 8);
  EXPECT_EQ(s->num_kv_heads, 4);
  EXPECT_EQ(s->intermediate_size, 1536);
  EXPECT_EQ(s->vocab_size, 32000);
  absl::StatusOr<TinyModelOptions> m = TinyModelPreset("M");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->hidden_size, 1024);
  EXPECT_EQ(m->num_layers, 12);
  EXPECT_EQ(m->num_heads, 16);
  EXPECT_EQ(m->num_kv_heads, 4);
  EXPECT_EQ(m->intermediate_size, 2816);
  EXPECT_EQ(m->vocab_size, 32000);
  absl::StatusOr<TinyModelOptions> tiny = TinyModelPreset("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->hidden_size, TinyModelOptions().hidden_size);
  EXPECT_EQ(TinyModelPreset("XL").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TinyModelTest, ParsesDtypeNames) {
  EXPECT_EQ(*ParseTinyModelDtype("f32"), kernels::DType::kF32);
  EXPECT_EQ(*ParseTinyModelDtype("f16"), kernels::DType::kF16);
  EXPECT_EQ(*ParseTinyModelDtype("bf16"), kernels::DType::kBf16);
  EXPECT_THAT(ParseTinyModelDtype("int8").status().message(),
              HasSubstr("--dtype=int8 is not f32, f16 or bf16"));
}

TEST(TinyModelTest, RejectsInconsistentOptions) {
  const std::string dir = NewTempDir("bad_options");
  struct Case {
    TinyModelOptions options;
    const char* message;
  };
  std::vector<Case> cases(5);
  cases[0].options.vocab_size = 200;
  cases[0].message = "vocab_size 200 is below 258";
  cases[1].options.num_kv_heads = 3;
  cases[1].message = "not a multiple of num_key_value_heads 3";
  cases[2].options.hidden_size = 66;
  cases[2].message = "hidden_size 66 must be a positive multiple of num_heads";
  cases[3].options.shards = 0;
  cases[3].message = "shards 0 must be in [1, 21]";
  cases[4].options.num_layers = 0;
  cases[4].message = "num_hidden_layers must be positive";
  for (const Case& c : cases) {
    const absl::Status status = WriteTinyModel(c.options, dir);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
  EXPECT_FALSE(PathExists(JoinPath(dir, "config.json")));
}

TEST(TinyModelTest, CreatesMissingFolders) {
  const std::string dir = JoinPath(NewTempDir("nested"), "a/b/c");
  ASSERT_TRUE(WriteTinyModel(TinyModelOptions(), dir).ok());
  EXPECT_TRUE(PathExists(JoinPath(dir, "config.json")));
}

}  // namespace
}  // namespace longctx
