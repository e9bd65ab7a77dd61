// ModelWeights: a Llama-family model folder opened for serving — its config,
// every weight tensor checked for presence, shape and dtype, and the model
// fingerprint that keys its KV blocks.
#ifndef LONGCTX_MODEL_FOLDER_MODEL_WEIGHTS_H_
#define LONGCTX_MODEL_FOLDER_MODEL_WEIGHTS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kvblock/hash128.h"
#include "model/folder/model_config.h"
#include "model/folder/safetensors.h"

namespace longctx {

// WeightTensor is one weight of the model, in Hugging Face layout (linear
// layers [out_features, in_features], row-major), pointing into a mapped
// file. An absent optional tensor has data == nullptr and an empty name.
struct WeightTensor {
  std::string name;  // e.g. "model.layers.3.self_attn.q_proj.weight".
  const void* data = nullptr;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
  uint64_t size_bytes = 0;

  bool present() const { return data != nullptr; }
  int64_t num_elements() const;
};

// LayerWeights are the tensors of one decoder layer. Sizes: q = heads *
// head_dim, kv = kv_heads * head_dim, ffn = intermediate_size.
struct LayerWeights {
  WeightTensor input_layernorm;           // [hidden]
  WeightTensor q_proj;                    // [q, hidden]
  WeightTensor k_proj;                    // [kv, hidden]
  WeightTensor v_proj;                    // [kv, hidden]
  WeightTensor o_proj;                    // [hidden, q]
  WeightTensor q_bias, k_bias, v_bias;    // [q], [kv], [kv]; only with
                                          // attention_bias, else absent.
  WeightTensor post_attention_layernorm;  // [hidden]
  WeightTensor gate_proj;                 // [ffn, hidden]
  WeightTensor up_proj;                   // [ffn, hidden]
  WeightTensor down_proj;                 // [hidden, ffn]
};

// ModelWeights is an opened model folder. It owns the mappings of its files:
// every WeightTensor::data stays valid while the object lives. Immutable after
// Load and thread-safe.
class ModelWeights {
 public:
  // Load opens `model_dir`: config.json (see LoadModelConfig), then
  // model.safetensors or the shards of model.safetensors.index.json (see
  // WeightStore::Open), then checks that every tensor the config implies is
  // present with its exact shape and an F32, F16 or BF16 dtype (each tensor
  // may have its own), and computes the fingerprint, reading every weight
  // byte once: 0.5-1 s per GB from the page cache, where mapping the pages in
  // costs more than hashing them (~20 GB/s); the engine's later copy then
  // finds them mapped. Tensors the model does not use (e.g.
  // rotary_emb.inv_freq, or lm_head.weight of a tied model) are ignored.
  //
  // Errors: NOT_FOUND when the folder, config.json or the weight files do not
  // exist; INVALID_ARGUMENT for a bad config, a corrupt file, a missing
  // tensor ("<dir>: tensor model.norm.weight is missing"), a shape mismatch
  // ("<file>: model.layers.3.self_attn.q_proj.weight: shape [512,500],
  // expected [512,512]") or an unsupported dtype.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Load(
      const std::string& model_dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }

  // The tensors, shaped as in LayerWeights' comments: embed_tokens is
  // [vocab, hidden], final_norm [hidden], one LayerWeights per layer.
  const WeightTensor& embed_tokens() const { return embed_tokens_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const WeightTensor& final_norm() const { return final_norm_; }
  // lm_head is [vocab, hidden]; the same tensor as embed_tokens() when the
  // model ties them (config().tie_word_embeddings).
  const WeightTensor& lm_head() const {
    return config_.tie_word_embeddings ? embed_tokens_ : lm_head_;
  }

  // The model fingerprint: Hash128 over the architecture, the config fields
  // that change what the model computes (sizes, rms_norm_eps, rope_theta,
  // rope_scaling, tie_word_embeddings, attention_bias; not
  // max_position_embeddings, torch_dtype or token ids), and for every used
  // tensor in a fixed order its name, dtype, shape and the Hash128 of its
  // bytes. Equal for equal content wherever the files live and however they
  // are sharded; different when any weight byte differs.
  const Hash128& fingerprint() const { return fingerprint_; }

  // The total bytes of the used tensors.
  uint64_t weight_bytes() const { return weight_bytes_; }

 private:
  ModelWeights() = default;

  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<WeightStore> store_;
  WeightTensor embed_tokens_;
  std::vector<LayerWeights> layers_;
  WeightTensor final_norm_;
  WeightTensor lm_head_;  // Absent when tied.
  Hash128 fingerprint_;
  uint64_t weight_bytes_ = 0;
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_MODEL_WEIGHTS_H_
