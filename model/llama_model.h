// LlamaModel: a Llama-family decoder (RMSNorm, rotary embeddings, grouped-query
// attention, SwiGLU MLP, optional q/k/v biases, tied or untied embeddings)
// running on the CPU kernels, over the paged KV cache. Implements ForwardModel
// for the engine.
#ifndef LONGCTX_MODEL_LLAMA_MODEL_H_
#define LONGCTX_MODEL_LLAMA_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/forward_model.h"
#include "kernels/dtype.h"
#include "kernels/gemm.h"
#include "kernels/rope.h"

namespace longctx {

// LlamaShape is the architecture of the model.
struct LlamaShape {
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  float rms_norm_eps = 1e-5f;
  kernels::RopeParams rope;  // head_dim is set from head_dim above.
};

// TensorRef points at a weight tensor held elsewhere (e.g. a memory-mapped
// file).
struct TensorRef {
  const void* data = nullptr;  // Null for an absent optional tensor.
  kernels::DType dtype = kernels::DType::kF32;
};

// LlamaWeights are the model's tensors in Hugging Face layout ([out, in] for
// linear layers). They only need to live until LlamaModel::Create returns:
// every tensor is copied (packed or converted).
struct LlamaWeights {
  struct Layer {
    TensorRef input_norm;  // [hidden]
    TensorRef q, k, v, o;  // [heads*hd, hidden], [kv*hd, hidden] x2,
                           // [hidden, heads*hd]
    TensorRef q_bias, k_bias, v_bias;  // Optional: [heads*hd], [kv*hd] x2.
    TensorRef post_attention_norm;     // [hidden]
    TensorRef gate, up, down;          // [ffn, hidden] x2, [hidden, ffn]
  };
  TensorRef embed_tokens;  // [vocab, hidden]
  std::vector<Layer> layers;
  TensorRef final_norm;  // [hidden]
  TensorRef lm_head;     // [vocab, hidden]; absent means tied to embed_tokens.
};

// LlamaModelOptions chooses how the model computes.
struct LlamaModelOptions {
  // Precision of the GEMMs (--compute_precision). Default: fp32.
  kernels::ComputePrecision precision = kernels::ComputePrecision::kFp32;
  // How every linear layer's weight (q/k/v, o, gate/up, down, lm_head) is
  // held (--weight_dtype): kAuto in `precision`, kInt8 quantized at load
  // (per output row; see kernels/gemm.h), half the bytes of bf16 to stream
  // per decode step. Default: kAuto.
  kernels::WeightDtype weight_dtype = kernels::WeightDtype::kAuto;
  // Threads of the kernels (--threads); 0 uses every CPU. Default: 0.
  int threads = 0;
};

// CacheDType is the kernels' element type of a KV cache dtype.
kernels::DType CacheDType(KvDtype dtype);

// KvLayoutFor is the layout of the KV blocks a model of `shape` writes, on
// any device (block_size and dtype from the caller).
KvLayout KvLayoutFor(const LlamaShape& shape, int block_size, KvDtype dtype);

// LayerAttention computes the attention of one layer for a batch of tokens (the
// part of a layer that needs other tokens' keys and values): it stores the
// batch's keys and values where it keeps the KV cache and writes each token's
// attention output. LlamaModel::Forward uses one over the local paged cache;
// a rank of a group uses one that exchanges KV or queries with its peers.
class LayerAttention {
 public:
  virtual ~LayerAttention() = default;
  // qkv: the batch's rows [q | k | v] after rotary embedding, row t at
  // qkv + t * qkv_stride (null when the batch is empty). out: row t's
  // attention output [num_heads * head_dim] at out + t * out_stride. Called
  // once per layer, in order, even for an empty batch.
  virtual absl::Status Attend(int layer, const float* qkv, int64_t qkv_stride,
                              float* out, int64_t out_stride) = 0;
};

// LlamaModel is used from one thread at a time (the engine's).
class LlamaModel : public ForwardModel {
 public:
  // Create packs the weights. INVALID_ARGUMENT for inconsistent shapes or a
  // missing tensor, UNIMPLEMENTED for bf16 compute on a CPU without bf16
  // support.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Create(
      const LlamaShape& shape, const LlamaWeights& weights,
      const LlamaModelOptions& options);

  int vocab_size() const override { return shape_.vocab_size; }
  const LlamaShape& shape() const { return shape_; }

  // The layout of KV blocks this model writes (block_size and dtype from the
  // caller).
  KvLayout KvLayoutFor(int block_size, KvDtype dtype) const;

  // The type attention multiplies in (kernels::AttentionParams::compute):
  // bf16 with --compute_precision=bf16, fp32 otherwise.
  kernels::DType attention_compute() const {
    return options_.precision == kernels::ComputePrecision::kBf16
               ? kernels::DType::kBf16
               : kernels::DType::kF32;
  }

  absl::Status Forward(absl::Span<const SeqSpan> spans, KvBlockPool& pool,
                       float* logits) override;

  // RunTokens runs a batch of tokens (ids at absolute positions) through every
  // layer, `attention` supplying each layer's attention, and writes one row of
  // vocab_size() logits per entry of `logit_rows` (indices into the batch) to
  // `logits`. An empty batch still calls `attention` for every layer.
  absl::Status RunTokens(absl::Span<const int32_t> ids,
                         absl::Span<const int32_t> positions,
                         LayerAttention& attention,
                         absl::Span<const int64_t> logit_rows, float* logits);

 private:
  struct Layer {
    std::vector<float> input_norm, post_attention_norm;
    // Set by Create (PackedWeight has no empty state).
    std::optional<kernels::PackedWeight> qkv, o, gate_up, down;
    std::vector<float> qkv_bias;  // Empty when the model has none.
  };

  explicit LlamaModel(const LlamaShape& shape,
                      const LlamaModelOptions& options);

  const LlamaShape shape_;
  const LlamaModelOptions options_;
  kernels::DType embed_dtype_ = kernels::DType::kF32;
  std::vector<uint8_t> embed_;  // [vocab, hidden] in embed_dtype_.
  std::vector<Layer> layers_;
  std::vector<float> final_norm_;
  std::unique_ptr<kernels::PackedWeight> lm_head_;
  std::vector<float> inv_freq_;  // [head_dim / 2]
  kernels::Gemm gemm_;

  // Scratch, grown to the largest batch seen.
  std::vector<float> x_, h_, delta_, qkv_, attn_, mlp_, act_, rows_;
  std::vector<int32_t> ids_;
  std::vector<int32_t> positions_;
  std::vector<int64_t> logit_rows_;
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_LLAMA_MODEL_H_
