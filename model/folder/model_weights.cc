#include "model/folder/model_weights.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/folder/io_util.h"

namespace longctx {
namespace {

// Bumped whenever what the fingerprint covers changes, so that stored KV
// blocks of an older scheme never match.
constexpr absl::string_view kFingerprintTag = "longctx.model_fingerprint.v1";

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// Resolve fills `out` with the tensor `name` of `store`, checking its shape
// and dtype.
absl::Status Resolve(const WeightStore& store, const std::string& dir,
                     const std::string& name, std::vector<int64_t> shape,
                     WeightTensor* out) {
  const SafetensorsTensor* tensor = store.Find(name);
  if (tensor == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": tensor ", name, " is missing (expected shape ",
                     ShapeString(shape), ")"));
  }
  if (tensor->shape != shape) {
    return absl::InvalidArgumentError(
        absl::StrCat(tensor->file, ": ", name, ": shape ",
                     tensor->ShapeString(), ", expected ", ShapeString(shape)));
  }
  absl::StatusOr<kernels::DType> dtype = SupportedDtype(*tensor);
  if (!dtype.ok()) return dtype.status();
  out->name = name;
  out->data = tensor->data;
  out->dtype = *dtype;
  out->shape = std::move(shape);
  out->size_bytes = tensor->size_bytes;
  return absl::OkStatus();
}

void HashString(Hasher128& hasher, absl::string_view text) {
  hasher.UpdateU64(text.size());
  hasher.Update(text);
}

void HashDouble(Hasher128& hasher, double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  hasher.UpdateU64(bits);
}

void HashConfig(Hasher128& hasher, const ModelConfig& config) {
  HashString(hasher, config.architecture);
  for (int size :
       {config.hidden_size, config.intermediate_size, config.num_hidden_layers,
        config.num_attention_heads, config.num_key_value_heads, config.head_dim,
        config.vocab_size}) {
    hasher.UpdateU64(static_cast<uint64_t>(size));
  }
  HashDouble(hasher, config.rms_norm_eps);
  HashDouble(hasher, config.rope_theta);
  hasher.UpdateU64(config.rope_scaling.has_value());
  if (config.rope_scaling.has_value()) {
    HashDouble(hasher, config.rope_scaling->factor);
    HashDouble(hasher, config.rope_scaling->low_freq_factor);
    HashDouble(hasher, config.rope_scaling->high_freq_factor);
    hasher.UpdateU64(static_cast<uint64_t>(
        config.rope_scaling->original_max_position_embeddings));
  }
  hasher.UpdateU64(config.tie_word_embeddings);
  hasher.UpdateU64(config.attention_bias);
}

void HashTensor(Hasher128& hasher, const WeightTensor& tensor) {
  HashString(hasher, tensor.name);
  HashString(hasher, SafetensorsDtypeName(tensor.dtype));
  hasher.UpdateU64(tensor.shape.size());
  for (int64_t dim : tensor.shape) hasher.UpdateU64(static_cast<uint64_t>(dim));
  hasher.Update(ComputeHash128(tensor.data, tensor.size_bytes));
}

}  // namespace

int64_t WeightTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Load(
    const std::string& model_dir) {
  if (!IsDirectory(model_dir)) {
    return absl::NotFoundError(
        absl::StrCat(model_dir,
                     ": not a folder (a model folder holds "
                     "config.json and *.safetensors)"));
  }
  std::unique_ptr<ModelWeights> model(new ModelWeights());
  model->dir_ = model_dir;
  absl::StatusOr<ModelConfig> config = LoadModelConfig(model_dir);
  if (!config.ok()) return config.status();
  model->config_ = *std::move(config);
  absl::StatusOr<std::unique_ptr<WeightStore>> store =
      WeightStore::Open(model_dir);
  if (!store.ok()) return store.status();
  model->store_ = *std::move(store);

  const ModelConfig& c = model->config_;
  const WeightStore& s = *model->store_;
  const int64_t hidden = c.hidden_size, q = c.q_size(), kv = c.kv_size(),
                ffn = c.intermediate_size, vocab = c.vocab_size;
  // The used tensors in the fingerprint's order.
  std::vector<const WeightTensor*> used;

  LONGCTX_RETURN_IF_ERROR(Resolve(s, model_dir, "model.embed_tokens.weight",
                                  {vocab, hidden}, &model->embed_tokens_));
  used.push_back(&model->embed_tokens_);
  model->layers_.resize(c.num_hidden_layers);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights& layer = model->layers_[i];
    const std::string prefix = absl::StrCat("model.layers.", i, ".");
    struct Entry {
      const char* suffix;
      std::vector<int64_t> shape;
      WeightTensor* out;
    };
    std::vector<Entry> entries = {
        {"input_layernorm.weight", {hidden}, &layer.input_layernorm},
        {"self_attn.q_proj.weight", {q, hidden}, &layer.q_proj},
        {"self_attn.k_proj.weight", {kv, hidden}, &layer.k_proj},
        {"self_attn.v_proj.weight", {kv, hidden}, &layer.v_proj},
        {"self_attn.o_proj.weight", {hidden, q}, &layer.o_proj},
    };
    if (c.attention_bias) {
      entries.push_back({"self_attn.q_proj.bias", {q}, &layer.q_bias});
      entries.push_back({"self_attn.k_proj.bias", {kv}, &layer.k_bias});
      entries.push_back({"self_attn.v_proj.bias", {kv}, &layer.v_bias});
    }
    entries.push_back({"post_attention_layernorm.weight",
                       {hidden},
                       &layer.post_attention_layernorm});
    entries.push_back(
        {"mlp.gate_proj.weight", {ffn, hidden}, &layer.gate_proj});
    entries.push_back({"mlp.up_proj.weight", {ffn, hidden}, &layer.up_proj});
    entries.push_back(
        {"mlp.down_proj.weight", {hidden, ffn}, &layer.down_proj});
    for (Entry& entry : entries) {
      LONGCTX_RETURN_IF_ERROR(Resolve(s, model_dir,
                                      absl::StrCat(prefix, entry.suffix),
                                      std::move(entry.shape), entry.out));
      used.push_back(entry.out);
    }
  }
  LONGCTX_RETURN_IF_ERROR(Resolve(s, model_dir, "model.norm.weight", {hidden},
                                  &model->final_norm_));
  used.push_back(&model->final_norm_);
  if (!c.tie_word_embeddings) {
    LONGCTX_RETURN_IF_ERROR(Resolve(s, model_dir, "lm_head.weight",
                                    {vocab, hidden}, &model->lm_head_));
    used.push_back(&model->lm_head_);
  }

  Hasher128 hasher;
  HashString(hasher, kFingerprintTag);
  HashConfig(hasher, c);
  hasher.UpdateU64(used.size());
  for (const WeightTensor* tensor : used) {
    HashTensor(hasher, *tensor);
    model->weight_bytes_ += tensor->size_bytes;
  }
  model->fingerprint_ = hasher.Finish();
  return model;
}

}  // namespace longctx
