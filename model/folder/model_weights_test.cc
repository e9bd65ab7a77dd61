#include "model/folder/model_weights.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/folder/io_util.h"
#include "model/folder/safetensors.h"
#include "services/common/testing/temp_dir.h"
#include "tools/make_tiny_model/tiny_model.h"

namespace longctx {
namespace {

using ::longctx::testing::NewTempDir;
using ::testing::HasSubstr;

std::string MakeModel(const std::string& name,
                      const TinyModelOptions& options = {}) {
  const std::string dir = NewTempDir(name);
  const absl::Status status = WriteTinyModel(options, dir);
  EXPECT_TRUE(status.ok()) << status;
  return dir;
}

// Edit changes one tensor: its spec and bytes may be modified; returning
// false drops it.
using Edit = std::function<bool(SafetensorsTensorSpec&, std::string&)>;

// RewriteWeights rewrites dir/model.safetensors through `edit`.
void RewriteWeights(const std::string& dir, const Edit& edit) {
  const std::string path = JoinPath(dir, "model.safetensors");
  std::vector<SafetensorsTensorSpec> specs;
  std::vector<std::string> data;
  {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    for (const SafetensorsTensor& t : (*file)->tensors()) {
      SafetensorsTensorSpec spec{t.name, t.dtype, t.shape};
      std::string bytes(reinterpret_cast<const char*>(t.data), t.size_bytes);
      if (!edit(spec, bytes)) continue;
      specs.push_back(std::move(spec));
      data.push_back(std::move(bytes));
    }
  }
  std::vector<SafetensorsTensorData> tensors;
  for (size_t i = 0; i < specs.size(); ++i) {
    tensors.push_back({specs[i], data[i]});
  }
  const absl::Status status = WriteSafetensors(path, tensors);
  ASSERT_TRUE(status.ok()) << status;
}

void ExpectLoadError(const std::string& dir, absl::StatusCode code,
                     const std::string& substring) {
  absl::StatusOr<std::unique_ptr<ModelWeights>> model = ModelWeights::Load(dir);
  ASSERT_FALSE(model.ok()) << substring;
  EXPECT_EQ(model.status().code(), code) << model.status();
  EXPECT_THAT(model.status().message(), HasSubstr(substring));
}

void ExpectShape(const WeightTensor& tensor, std::vector<int64_t> shape) {
  EXPECT_TRUE(tensor.present()) << tensor.name;
  EXPECT_EQ(tensor.shape, shape) << tensor.name;
}

TEST(ModelWeightsTest, LoadsTinyModelInEveryDtype) {
  for (kernels::DType dtype :
       {kernels::DType::kF32, kernels::DType::kF16, kernels::DType::kBf16}) {
    TinyModelOptions options;
    options.dtype = dtype;
    const std::string dir =
        MakeModel(absl::StrCat("dtype_", kernels::DTypeName(dtype)), options);
    absl::StatusOr<std::unique_ptr<ModelWeights>> model =
        ModelWeights::Load(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    const ModelWeights& m = **model;
    EXPECT_EQ(m.config().architecture, "LlamaForCausalLM");
    EXPECT_EQ(m.config().hidden_size, 64);
    ASSERT_EQ(m.layers().size(), 2u);
    ExpectShape(m.embed_tokens(), {258, 64});
    EXPECT_EQ(m.embed_tokens().dtype, dtype);
    EXPECT_EQ(m.embed_tokens().size_bytes,
              258u * 64u * kernels::DTypeSize(dtype));
    for (const LayerWeights& layer : m.layers()) {
      ExpectShape(layer.input_layernorm, {64});
      ExpectShape(layer.q_proj, {64, 64});
      ExpectShape(layer.k_proj, {32, 64});
      ExpectShape(layer.v_proj, {32, 64});
      ExpectShape(layer.o_proj, {64, 64});
      EXPECT_FALSE(layer.q_bias.present());
      EXPECT_FALSE(layer.k_bias.present());
      EXPECT_FALSE(layer.v_bias.present());
      ExpectShape(layer.post_attention_layernorm, {64});
      ExpectShape(layer.gate_proj, {128, 64});
      ExpectShape(layer.up_proj, {128, 64});
      ExpectShape(layer.down_proj, {64, 128});
      EXPECT_EQ(layer.down_proj.dtype, dtype);
    }
    ExpectShape(m.final_norm(), {64});
    ExpectShape(m.lm_head(), {258, 64});
    EXPECT_NE(m.lm_head().data, m.embed_tokens().data);
  }
}

TEST(ModelWeightsTest, WeightsAreWellScaled) {
  const std::string dir = MakeModel("scaled");
  absl::StatusOr<std::unique_ptr<ModelWeights>> model = ModelWeights::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  auto stats = [](const WeightTensor& t, double* mean, double* std) {
    const float* v = static_cast<const float*>(t.data);
    double sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      sum += v[i];
      sum_sq += double(v[i]) * v[i];
    }
    *mean = sum / t.num_elements();
    *std = std::sqrt(sum_sq / t.num_elements() - *mean * *mean);
  };
  double mean, std;
  // q_proj: 4096 values, std 1/sqrt(64) = 0.125; the estimate is within ~2%.
  stats((*model)->layers()[0].q_proj, &mean, &std);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(std, 0.125, 0.01);
  // down_proj: fan_in 128.
  stats((*model)->layers()[1].down_proj, &mean, &std);
  EXPECT_NEAR(std, 1.0 / std::sqrt(128.0), 0.01);
  // Norms: 1 + N(0, 0.05) over 64 values.
  stats((*model)->final_norm(), &mean, &std);
  EXPECT_NEAR(mean, 1.0, 0.03);
  EXPECT_GT(std, 0.02);
  EXPECT_LT(std, 0.1);
}

TEST(ModelWeightsTest, BiasesAndTiedEmbeddingsFollowTheConfig) {
  TinyModelOptions options;
  options.attention_bias = true;
  options.tie_word_embeddings = true;
  const std::string dir = MakeModel("bias_tied", options);
  absl::StatusOr<std::unique_ptr<ModelWeights>> model = ModelWeights::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  const LayerWeights& layer = (*model)->layers()[1];
  ExpectShape(layer.q_bias, {64});
  ExpectShape(layer.k_bias, {32});
  ExpectShape(layer.v_bias, {32});
  EXPECT_EQ(layer.q_bias.name, "model.layers.1.self_attn.q_proj.bias");
  EXPECT_EQ((*model)->lm_head().data, (*model)->embed_tokens().data);
}

TEST(ModelWeightsTest, ShardedModelLoadsWithTheSameFingerprint) {
  TinyModelOptions options;
  options.dtype = kernels::DType::kBf16;
  const std::string single = MakeModel("single", options);
  options.shards = 3;
  const std::string sharded = MakeModel("sharded", options);
  EXPECT_TRUE(
      PathExists(JoinPath(sharded, "model-00003-of-00003.safetensors")));
  EXPECT_TRUE(PathExists(JoinPath(sharded, "model.safetensors.index.json")));
  EXPECT_FALSE(PathExists(JoinPath(sharded, "model.safetensors")));

  absl::StatusOr<std::unique_ptr<ModelWeights>> a = ModelWeights::Load(single);
  absl::StatusOr<std::unique_ptr<ModelWeights>> b = ModelWeights::Load(sharded);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*a)->fingerprint(), (*b)->fingerprint());
  EXPECT_EQ((*a)->weight_bytes(), (*b)->weight_bytes());
  EXPECT_EQ(std::memcmp((*a)->layers()[1].up_proj.data,
                        (*b)->layers()[1].up_proj.data,
                        (*a)->layers()[1].up_proj.size_bytes),
            0);
}

TEST(ModelWeightsTest, RewritingAShardedModelAsOneFileLeavesNoStaleShards) {
  TinyModelOptions options;
  options.shards = 2;
  const std::string dir = MakeModel("reshard", options);
  options.shards = 1;
  ASSERT_TRUE(WriteTinyModel(options, dir).ok());
  EXPECT_FALSE(PathExists(JoinPath(dir, "model.safetensors.index.json")));
  EXPECT_FALSE(PathExists(JoinPath(dir, "model-00001-of-00002.safetensors")));
  EXPECT_TRUE(ModelWeights::Load(dir).ok());
}

TEST(ModelWeightsTest, FingerprintIsEqualForEqualContent) {
  const std::string a = MakeModel("same_a");
  const std::string b = MakeModel("same_b");
  absl::StatusOr<std::unique_ptr<ModelWeights>> ma = ModelWeights::Load(a);
  absl::StatusOr<std::unique_ptr<ModelWeights>> mb = ModelWeights::Load(b);
  ASSERT_TRUE(ma.ok() && mb.ok());
  EXPECT_EQ((*ma)->fingerprint(), (*mb)->fingerprint());
  EXPECT_EQ((*ma)->fingerprint().ToHex().size(), 32u);
}

TEST(ModelWeightsTest, FingerprintChangesWhenOneWeightByteChanges) {
  const std::string dir = MakeModel("one_byte");
  absl::StatusOr<std::unique_ptr<ModelWeights>> before =
      ModelWeights::Load(dir);
  ASSERT_TRUE(before.ok());
  const Hash128 original = (*before)->fingerprint();
  before->reset();
  RewriteWeights(dir, [](SafetensorsTensorSpec& spec, std::string& bytes) {
    if (spec.name == "model.layers.1.mlp.down_proj.weight") bytes[1000] ^= 1;
    return true;
  });
  absl::StatusOr<std::unique_ptr<ModelWeights>> after = ModelWeights::Load(dir);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_NE((*after)->fingerprint(), original);
}

TEST(ModelWeightsTest, FingerprintDependsOnSeedDtypeAndConfig) {
  absl::StatusOr<std::unique_ptr<ModelWeights>> base =
      ModelWeights::Load(MakeModel("fp_base"));
  ASSERT_TRUE(base.ok());
  TinyModelOptions seed;
  seed.seed = 2;
  TinyModelOptions dtype;
  dtype.dtype = kernels::DType::kF16;
  TinyModelOptions theta;
  theta.rope_theta = 10000.0;
  int i = 0;
  for (const TinyModelOptions& options : {seed, dtype, theta}) {
    absl::StatusOr<std::unique_ptr<ModelWeights>> other =
        ModelWeights::Load(MakeModel(absl::StrCat("fp_", i++), options));
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_NE((*other)->fingerprint(), (*base)->fingerprint()) << i;
  }
}

TEST(ModelWeightsTest, UnusedTensorsAreIgnored) {
  const std::string dir = MakeModel("unused");
  absl::StatusOr<std::unique_ptr<ModelWeights>> before =
      ModelWeights::Load(dir);
  ASSERT_TRUE(before.ok());
  const Hash128 original = (*before)->fingerprint();
  before->reset();
  std::vector<SafetensorsTensorSpec> specs;
  // Add an extra I64 tensor, as old checkpoints carry position ids.
  RewriteWeights(dir,
                 [](SafetensorsTensorSpec&, std::string&) { return true; });
  {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(JoinPath(dir, "model.safetensors"));
    ASSERT_TRUE(file.ok());
    std::vector<SafetensorsTensorData> tensors;
    for (const SafetensorsTensor& t : (*file)->tensors()) {
      tensors.push_back(
          {{t.name, t.dtype, t.shape},
           absl::string_view(reinterpret_cast<const char*>(t.data),
                             t.size_bytes)});
    }
    const std::string ids(16, '\0');
    tensors.push_back({{"model.position_ids", "I64", {2}}, ids});
    ASSERT_TRUE(
        WriteSafetensors(JoinPath(dir, "model.safetensors"), tensors).ok());
  }
  absl::StatusOr<std::unique_ptr<ModelWeights>> after = ModelWeights::Load(dir);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)->fingerprint(), original);
}

TEST(ModelWeightsErrorsTest, MissingFolderOrConfig) {
  ExpectLoadError(JoinPath(::testing::TempDir(), "does_not_exist"),
                  absl::StatusCode::kNotFound, "does_not_exist: not a folder");
  const std::string dir = MakeModel("no_config");
  ASSERT_EQ(std::remove(JoinPath(dir, "config.json").c_str()), 0);
  ExpectLoadError(dir, absl::StatusCode::kNotFound, "config.json: not found");
}

TEST(ModelWeightsErrorsTest, MissingWeights) {
  const std::string dir = MakeModel("no_weights");
  ASSERT_EQ(std::remove(JoinPath(dir, "model.safetensors").c_str()), 0);
  ExpectLoadError(dir, absl::StatusCode::kNotFound,
                  "no model.safetensors or model.safetensors.index.json");
}

TEST(ModelWeightsErrorsTest, UnknownArchitecture) {
  const std::string dir = MakeModel("gpt2");
  absl::StatusOr<std::string> config = ReadFile(JoinPath(dir, "config.json"));
  ASSERT_TRUE(config.ok());
  std::string text = *config;
  text.replace(text.find("LlamaForCausalLM"), 16, "GPT2LMHeadModel");
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "config.json"), text).ok());
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "unsupported architecture \"GPT2LMHeadModel\"");
}

TEST(ModelWeightsErrorsTest, MalformedConfigJson) {
  const std::string dir = MakeModel("bad_json");
  ASSERT_TRUE(
      WriteFileAtomically(JoinPath(dir, "config.json"), "{\"hidden_size\": ")
          .ok());
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "config.json: malformed JSON");
}

TEST(ModelWeightsErrorsTest, MissingTensor) {
  const std::string dir = MakeModel("missing_tensor");
  RewriteWeights(dir, [](SafetensorsTensorSpec& spec, std::string&) {
    return spec.name != "model.layers.1.self_attn.v_proj.weight";
  });
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "tensor model.layers.1.self_attn.v_proj.weight is missing "
                  "(expected shape [32,64])");
}

TEST(ModelWeightsErrorsTest, MissingBiasWhenTheConfigAsksForIt) {
  TinyModelOptions options;
  options.attention_bias = true;
  const std::string dir = MakeModel("missing_bias", options);
  RewriteWeights(dir, [](SafetensorsTensorSpec& spec, std::string&) {
    return spec.name != "model.layers.0.self_attn.k_proj.bias";
  });
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "tensor model.layers.0.self_attn.k_proj.bias is missing");
}

TEST(ModelWeightsErrorsTest, MissingLmHeadOfAnUntiedModel) {
  const std::string dir = MakeModel("missing_lm_head");
  RewriteWeights(dir, [](SafetensorsTensorSpec& spec, std::string&) {
    return spec.name != "lm_head.weight";
  });
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "tensor lm_head.weight is missing");
}

TEST(ModelWeightsErrorsTest, WrongShape) {
  const std::string dir = MakeModel("wrong_shape");
  RewriteWeights(dir, [](SafetensorsTensorSpec& spec, std::string& bytes) {
    if (spec.name == "model.layers.0.self_attn.q_proj.weight") {
      spec.shape = {64, 62};
      bytes.resize(64 * 62 * 4);
    }
    return true;
  });
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "model.safetensors: model.layers.0.self_attn.q_proj.weight: "
                  "shape [64,62], expected [64,64]");
}

TEST(ModelWeightsErrorsTest, UnsupportedDtype) {
  const std::string dir = MakeModel("i32");
  RewriteWeights(dir, [](SafetensorsTensorSpec& spec, std::string&) {
    if (spec.name == "model.norm.weight") spec.dtype = "I32";
    return true;
  });
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "model.norm.weight: dtype I32 is not supported");
}

TEST(ModelWeightsErrorsTest, TruncatedFile) {
  const std::string dir = MakeModel("truncated");
  const std::string path = JoinPath(dir, "model.safetensors");
  absl::StatusOr<std::string> content = ReadFile(path);
  ASSERT_TRUE(content.ok());
  ASSERT_TRUE(
      WriteFileAtomically(path, content->substr(0, content->size() - 100))
          .ok());
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "run past the data section");
}

TEST(ModelWeightsErrorsTest, HeaderLengthLargerThanFile) {
  const std::string dir = MakeModel("long_header");
  const std::string path = JoinPath(dir, "model.safetensors");
  absl::StatusOr<std::string> content = ReadFile(path);
  ASSERT_TRUE(content.ok());
  std::string bytes = *content;
  bytes[5] = 1;  // Header length += 2^40.
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "exceeds the file size");
}

TEST(ModelWeightsErrorsTest, OffsetsOutOfRange) {
  const std::string dir = MakeModel("offsets");
  const std::string path = JoinPath(dir, "model.safetensors");
  absl::StatusOr<std::string> content = ReadFile(path);
  ASSERT_TRUE(content.ok());
  // Drop the data of the last tensors but keep the header as is.
  uint64_t header_size = 0;
  std::memcpy(&header_size, content->data(), 8);
  ASSERT_TRUE(
      WriteFileAtomically(path, content->substr(0, 8 + header_size + 64)).ok());
  ExpectLoadError(dir, absl::StatusCode::kInvalidArgument,
                  "run past the data section of 64 bytes");
}

TEST(ModelWeightsErrorsTest, ShardMissingFromTheIndex) {
  TinyModelOptions options;
  options.shards = 2;
  const std::string dir = MakeModel("lost_shard", options);
  ASSERT_EQ(
      std::remove(JoinPath(dir, "model-00002-of-00002.safetensors").c_str()),
      0);
  ExpectLoadError(dir, absl::StatusCode::kNotFound,
                  "model-00002-of-00002.safetensors: not found");
}

}  // namespace
}  // namespace longctx
