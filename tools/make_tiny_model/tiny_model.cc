#include "tools/make_tiny_model/tiny_model.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kvblock/hash128.h"
#include "model/folder/io_util.h"
#include "model/folder/model_config.h"
#include "model/folder/safetensors.h"
#include "model/hf_tokenizer/tokenizer_families.h"
#include "model/hf_tokenizer/training_text.h"
#include "nlohmann/json.hpp"

namespace longctx {
namespace {

// How a tensor's values are drawn: normal(mean, std).
struct TensorPlan {
  SafetensorsTensorSpec spec;
  double mean = 0.0;
  double std = 1.0;
  uint64_t bytes = 0;
};

ModelConfig ConfigOf(const TinyModelOptions& options) {
  ModelConfig config;
  config.architecture = "LlamaForCausalLM";
  config.hidden_size = options.hidden_size;
  config.intermediate_size = options.intermediate_size;
  config.num_hidden_layers = options.num_layers;
  config.num_attention_heads = options.num_heads;
  config.num_key_value_heads = options.num_kv_heads;
  config.head_dim =
      options.num_heads > 0 ? options.hidden_size / options.num_heads : 0;
  config.vocab_size = options.vocab_size;
  config.rms_norm_eps = options.rms_norm_eps;
  config.rope_theta = options.rope_theta;
  config.max_position_embeddings = options.max_position_embeddings;
  config.tie_word_embeddings = options.tie_word_embeddings;
  config.attention_bias = options.attention_bias;
  config.torch_dtype = options.dtype == kernels::DType::kF32   ? "float32"
                       : options.dtype == kernels::DType::kF16 ? "float16"
                                                               : "bfloat16";
  config.bos_token_id = 256;
  config.eos_token_ids = {257};
  return config;
}

std::vector<TensorPlan> PlanTensors(const ModelConfig& c,
                                    kernels::DType dtype) {
  const int64_t hidden = c.hidden_size, q = c.q_size(), kv = c.kv_size(),
                ffn = c.intermediate_size, vocab = c.vocab_size;
  const char* type = SafetensorsDtypeName(dtype);
  const double element_bytes = static_cast<double>(kernels::DTypeSize(dtype));
  std::vector<TensorPlan> plans;
  auto add = [&](std::string name, std::vector<int64_t> shape, double mean,
                 double std) {
    TensorPlan plan;
    plan.bytes = static_cast<uint64_t>(element_bytes);
    for (int64_t dim : shape) plan.bytes *= static_cast<uint64_t>(dim);
    plan.spec = {std::move(name), type, std::move(shape)};
    plan.mean = mean;
    plan.std = std;
    plans.push_back(std::move(plan));
  };
  auto linear = [&](std::string name, int64_t out, int64_t in) {
    add(std::move(name), {out, in}, 0.0, 1.0 / std::sqrt(double(in)));
  };
  const double norm_noise = 0.05, bias_std = 0.1;

  add("model.embed_tokens.weight", {vocab, hidden}, 0.0,
      c.tie_word_embeddings ? 1.0 / std::sqrt(double(hidden)) : 1.0);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    add(p + "input_layernorm.weight", {hidden}, 1.0, norm_noise);
    linear(p + "self_attn.q_proj.weight", q, hidden);
    linear(p + "self_attn.k_proj.weight", kv, hidden);
    linear(p + "self_attn.v_proj.weight", kv, hidden);
    linear(p + "self_attn.o_proj.weight", hidden, q);
    if (c.attention_bias) {
      add(p + "self_attn.q_proj.bias", {q}, 0.0, bias_std);
      add(p + "self_attn.k_proj.bias", {kv}, 0.0, bias_std);
      add(p + "self_attn.v_proj.bias", {kv}, 0.0, bias_std);
    }
    add(p + "post_attention_layernorm.weight", {hidden}, 1.0, norm_noise);
    linear(p + "mlp.gate_proj.weight", ffn, hidden);
    linear(p + "mlp.up_proj.weight", ffn, hidden);
    linear(p + "mlp.down_proj.weight", hidden, ffn);
  }
  add("model.norm.weight", {hidden}, 1.0, norm_noise);
  if (!c.tie_word_embeddings) linear("lm_head.weight", vocab, hidden);
  return plans;
}

// Values of one tensor. Each tensor has its own generator, seeded from the
// model seed and its name, so values do not depend on order or sharding.
// Normals come from Box-Muller over std::mt19937_64, whose output the C++
// standard fixes (std::normal_distribution's algorithm is not fixed).
std::string TensorBytes(const TensorPlan& plan, uint64_t seed,
                        kernels::DType dtype) {
  const std::string& name = plan.spec.name;
  std::mt19937_64 rng(ComputeHash128(name.data(), name.size(), seed).lo);
  int64_t n = 1;
  for (int64_t dim : plan.spec.shape) n *= dim;
  std::vector<float> values(n);
  const double kTwoPi = 6.283185307179586;
  for (int64_t i = 0; i < n; i += 2) {
    // u1 in (0, 1], so the log is finite.
    const double u1 = (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    values[i] = static_cast<float>(plan.mean +
                                   plan.std * radius * std::cos(kTwoPi * u2));
    if (i + 1 < n) {
      values[i + 1] = static_cast<float>(plan.mean + plan.std * radius *
                                                         std::sin(kTwoPi * u2));
    }
  }
  std::string bytes(plan.bytes, '\0');
  char* out = bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == kernels::DType::kF32) {
      std::memcpy(out + 4 * i, &values[i], 4);
    } else {
      const uint16_t half = dtype == kernels::DType::kF16
                                ? kernels::F32ToF16(values[i])
                                : kernels::F32ToBf16(values[i]);
      std::memcpy(out + 2 * i, &half, 2);
    }
  }
  return bytes;
}

absl::Status MakeDirectories(const std::string& dir) {
  for (size_t slash = 1; slash <= dir.size(); ++slash) {
    if (slash != dir.size() && dir[slash] != '/') continue;
    const std::string prefix = dir.substr(0, slash);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoToStatus(errno, prefix);
    }
  }
  if (!IsDirectory(dir)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, ": exists and is not a folder"));
  }
  return absl::OkStatus();
}

// RemoveOldModel deletes config.json and the weight files a model writer
// leaves, so that an earlier model's shards or index cannot mix with the new
// one.
absl::Status RemoveOldModel(const std::string& dir) {
  DIR* listing = opendir(dir.c_str());
  if (listing == nullptr) return ErrnoToStatus(errno, dir);
  std::vector<std::string> doomed;
  while (const dirent* entry = readdir(listing)) {
    const absl::string_view name = entry->d_name;
    if (name == "config.json" || name == "generation_config.json" ||
        name == "tokenizer.json" || name == "tokenizer_config.json" ||
        name == "model.safetensors" || name == "model.safetensors.index.json" ||
        (absl::StartsWith(name, "model-") &&
         absl::EndsWith(name, ".safetensors"))) {
      doomed.push_back(JoinPath(dir, name));
    }
  }
  closedir(listing);
  for (const std::string& path : doomed) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoToStatus(errno, path);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TinyModelOptions> TinyModelPreset(absl::string_view name) {
  TinyModelOptions options;
  if (name == "tiny") return options;
  if (name == "S") {
    options.hidden_size = 512;
    options.num_layers = 8;
    options.num_heads = 8;
    options.num_kv_heads = 4;
    options.intermediate_size = 1536;
    options.vocab_size = 32000;
    return options;
  }
  if (name == "M") {
    options.hidden_size = 1024;
    options.num_layers = 12;
    options.num_heads = 16;
    options.num_kv_heads = 4;
    options.intermediate_size = 2816;
    options.vocab_size = 32000;
    return options;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--preset=", name, " is not a preset (tiny, S or M are)"));
}

absl::StatusOr<kernels::DType> ParseTinyModelDtype(absl::string_view name) {
  if (name == "f32") return kernels::DType::kF32;
  if (name == "f16") return kernels::DType::kF16;
  if (name == "bf16") return kernels::DType::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype=", name, " is not f32, f16 or bf16"));
}

absl::Status WriteTinyModel(const TinyModelOptions& options,
                            const std::string& dir) {
  ModelConfig config = ConfigOf(options);
  std::optional<FamilyTokenizer> family_tokenizer;
  if (options.tokenizer != "byte") {
    absl::StatusOr<TokenizerFamily> family =
        ParseTokenizerFamily(options.tokenizer);
    if (!family.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: ", family.status().message(), " (or byte)"));
    }
    absl::StatusOr<FamilyTokenizer> made = MakeFamilyTokenizer(
        *family, options.tokenizer_merges, TokenizerTrainingText());
    if (!made.ok()) return made.status();
    family_tokenizer = *std::move(made);
    config.vocab_size = std::max(config.vocab_size, family_tokenizer->id_limit);
    config.bos_token_id.reset();
    if (family_tokenizer->bos_id >= 0) {
      config.bos_token_id = family_tokenizer->bos_id;
    }
    config.eos_token_ids = family_tokenizer->eos_ids;
  }
  if (options.num_heads <= 0 || options.hidden_size % options.num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hidden_size ", options.hidden_size,
        " must be a positive multiple of num_heads ", options.num_heads));
  }
  if (options.vocab_size < 258) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size ", options.vocab_size,
        " is below 258 (256 bytes, bos and eos of the byte tokenizer)"));
  }
  LONGCTX_RETURN_IF_ERROR(ValidateModelConfig(config, "tiny model options"));
  const std::vector<TensorPlan> plans = PlanTensors(config, options.dtype);
  if (options.shards < 1 || options.shards > static_cast<int>(plans.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("shards ", options.shards, " must be in [1, ",
                     plans.size(), "] (the number of tensors)"));
  }

  // Shard k holds the tensors whose data starts in the k-th equal slice of
  // the total bytes, with at least one tensor per shard.
  uint64_t total_bytes = 0;
  for (const TensorPlan& plan : plans) total_bytes += plan.bytes;
  std::vector<int> shard_of(plans.size());
  {
    uint64_t offset = 0;
    int shard = 0;
    for (size_t i = 0; i < plans.size(); ++i) {
      const int by_bytes = static_cast<int>(static_cast<double>(offset) *
                                            options.shards / total_bytes);
      // Move on when the bytes say so, or when every later tensor is needed
      // to give each remaining shard one.
      const size_t remaining_tensors = plans.size() - i;
      const size_t shards_after = options.shards - 1 - shard;
      if (i > 0 && shards_after > 0 &&
          (by_bytes > shard || remaining_tensors == shards_after)) {
        ++shard;
      }
      shard_of[i] = shard;
      offset += plans[i].bytes;
    }
  }

  LONGCTX_RETURN_IF_ERROR(MakeDirectories(dir));
  LONGCTX_RETURN_IF_ERROR(RemoveOldModel(dir));

  nlohmann::json weight_map = nlohmann::json::object();
  for (int shard = 0; shard < options.shards; ++shard) {
    const std::string file_name =
        options.shards == 1 ? std::string("model.safetensors")
                            : absl::StrFormat("model-%05d-of-%05d.safetensors",
                                              shard + 1, options.shards);
    std::vector<SafetensorsTensorSpec> specs;
    std::vector<const TensorPlan*> in_shard;
    for (size_t i = 0; i < plans.size(); ++i) {
      if (shard_of[i] != shard) continue;
      specs.push_back(plans[i].spec);
      in_shard.push_back(&plans[i]);
      weight_map[plans[i].spec.name] = file_name;
    }
    absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
        SafetensorsWriter::Create(JoinPath(dir, file_name), std::move(specs),
                                  {{"format", "pt"}});
    if (!writer.ok()) return writer.status();
    for (const TensorPlan* plan : in_shard) {
      LONGCTX_RETURN_IF_ERROR((*writer)->WriteNext(
          TensorBytes(*plan, options.seed, options.dtype)));
    }
    LONGCTX_RETURN_IF_ERROR((*writer)->Finish());
  }
  if (options.shards > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}},
                                  {"weight_map", weight_map}};
    LONGCTX_RETURN_IF_ERROR(WriteFileAtomically(
        JoinPath(dir, "model.safetensors.index.json"), index.dump(2) + "\n"));
  }
  if (family_tokenizer.has_value()) {
    LONGCTX_RETURN_IF_ERROR(
        WriteFileAtomically(JoinPath(dir, "tokenizer.json"),
                            family_tokenizer->tokenizer.dump(2) + "\n"));
    LONGCTX_RETURN_IF_ERROR(
        WriteFileAtomically(JoinPath(dir, "tokenizer_config.json"),
                            family_tokenizer->tokenizer_config.dump(2) + "\n"));
  } else {
    LONGCTX_RETURN_IF_ERROR(WriteFileAtomically(
        JoinPath(dir, "tokenizer_config.json"),
        "{\n  \"tokenizer_class\": \"LongctxByteTokenizer\"\n}\n"));
  }
  // As a Hub folder has one: the eos ids and the sampling defaults (those
  // of a request that sets none, so the tiny model behaves as without it).
  const nlohmann::json generation = {{"eos_token_id", config.eos_token_ids},
                                     {"do_sample", true},
                                     {"temperature", 1.0},
                                     {"top_p", 1.0}};
  LONGCTX_RETURN_IF_ERROR(WriteFileAtomically(
      JoinPath(dir, "generation_config.json"), generation.dump(2) + "\n"));
  return WriteFileAtomically(JoinPath(dir, "config.json"),
                             ModelConfigToJson(config));
}

}  // namespace longctx
