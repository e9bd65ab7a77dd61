#include "model/llama_model.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/rms_norm.h"
#include "kernels/swiglu.h"
#include "kernels/threads.h"

namespace longctx {
namespace {

using kernels::DType;
using kernels::PackedWeight;

absl::Status Missing(const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("model tensor missing: ", what));
}

// Converts a vector tensor of `n` elements to fp32.
absl::StatusOr<std::vector<float>> ToFloat(const TensorRef& t, int64_t n,
                                           const std::string& what) {
  if (t.data == nullptr) return Missing(what);
  std::vector<float> out(static_cast<size_t>(n));
  kernels::ConvertToF32(t.dtype, t.data, out.data(), n);
  return out;
}

// Packs row-blocks stacked in order (e.g. q, k, v) as one [sum rows, k] weight,
// so one GEMM computes them all, as `options` say. Blocks of different dtypes
// are widened to fp32.
absl::StatusOr<PackedWeight> PackStacked(
    const std::vector<std::pair<TensorRef, int64_t>>& blocks, int64_t k,
    const LlamaModelOptions& options, const std::string& what) {
  int64_t rows = 0;
  bool same_dtype = true;
  for (const auto& [tensor, n] : blocks) {
    if (tensor.data == nullptr) return Missing(what);
    rows += n;
    same_dtype = same_dtype && tensor.dtype == blocks[0].first.dtype;
  }
  if (blocks.size() == 1) {
    return PackedWeight::Create(blocks[0].first.data, blocks[0].first.dtype,
                                rows, k, options.precision,
                                options.weight_dtype);
  }
  const DType dtype = same_dtype ? blocks[0].first.dtype : DType::kF32;
  const size_t elem = kernels::DTypeSize(dtype);
  std::vector<uint8_t> stacked(static_cast<size_t>(rows * k) * elem);
  size_t offset = 0;
  for (const auto& [tensor, n] : blocks) {
    const size_t bytes = static_cast<size_t>(n * k) * elem;
    if (same_dtype) {
      std::memcpy(stacked.data() + offset, tensor.data, bytes);
    } else {
      kernels::ConvertToF32(tensor.dtype, tensor.data,
                            reinterpret_cast<float*>(stacked.data() + offset),
                            n * k);
    }
    offset += bytes;
  }
  return PackedWeight::Create(stacked.data(), dtype, rows, k, options.precision,
                              options.weight_dtype);
}

}  // namespace

LlamaModel::LlamaModel(const LlamaShape& shape,
                       const LlamaModelOptions& options)
    : shape_(shape), options_(options) {}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(
    const LlamaShape& shape, const LlamaWeights& weights,
    const LlamaModelOptions& options) {
  const LlamaShape& s = shape;
  if (s.hidden_size <= 0 || s.intermediate_size <= 0 || s.num_layers <= 0 ||
      s.num_heads <= 0 || s.num_kv_heads <= 0 || s.head_dim <= 0 ||
      s.vocab_size <= 0 || s.num_heads % s.num_kv_heads != 0 ||
      static_cast<int>(weights.layers.size()) != s.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "inconsistent model shape: hidden ", s.hidden_size, ", ffn ",
        s.intermediate_size, ", layers ", s.num_layers, " (",
        weights.layers.size(), " given), heads ", s.num_heads, ", kv heads ",
        s.num_kv_heads, ", head_dim ", s.head_dim, ", vocab ", s.vocab_size));
  }
  if (options.threads > 0) kernels::SetNumThreads(options.threads);
  std::unique_ptr<LlamaModel> model(new LlamaModel(shape, options));
  const int64_t h = s.hidden_size, hd = s.head_dim;
  const int64_t q_dim = int64_t{s.num_heads} * hd,
                kv_dim = int64_t{s.num_kv_heads} * hd;

  kernels::RopeParams rope = s.rope;
  rope.head_dim = s.head_dim;
  model->inv_freq_.resize(static_cast<size_t>(hd / 2));
  absl::Status status =
      kernels::ComputeRopeInvFreq(rope, model->inv_freq_.data());
  if (!status.ok()) return status;

  if (weights.embed_tokens.data == nullptr) return Missing("embed_tokens");
  model->embed_dtype_ = weights.embed_tokens.dtype;
  const size_t embed_bytes = static_cast<size_t>(s.vocab_size) * h *
                             kernels::DTypeSize(model->embed_dtype_);
  model->embed_.resize(embed_bytes);
  std::memcpy(model->embed_.data(), weights.embed_tokens.data, embed_bytes);

  for (int l = 0; l < s.num_layers; ++l) {
    const LlamaWeights::Layer& w = weights.layers[l];
    const std::string name = absl::StrCat("layers.", l, ".");
    Layer layer;
    auto input_norm = ToFloat(w.input_norm, h, name + "input_layernorm");
    if (!input_norm.ok()) return input_norm.status();
    layer.input_norm = *std::move(input_norm);
    auto post_norm =
        ToFloat(w.post_attention_norm, h, name + "post_attention_layernorm");
    if (!post_norm.ok()) return post_norm.status();
    layer.post_attention_norm = *std::move(post_norm);

    auto qkv = PackStacked({{w.q, q_dim}, {w.k, kv_dim}, {w.v, kv_dim}}, h,
                           options, name + "self_attn.{q,k,v}_proj");
    if (!qkv.ok()) return qkv.status();
    layer.qkv = *std::move(qkv);
    auto o = PackStacked({{w.o, h}}, q_dim, options, name + "self_attn.o_proj");
    if (!o.ok()) return o.status();
    layer.o = *std::move(o);
    if (w.q_bias.data != nullptr || w.k_bias.data != nullptr ||
        w.v_bias.data != nullptr) {
      auto qb = ToFloat(w.q_bias, q_dim, name + "self_attn.q_proj.bias");
      auto kb = ToFloat(w.k_bias, kv_dim, name + "self_attn.k_proj.bias");
      auto vb = ToFloat(w.v_bias, kv_dim, name + "self_attn.v_proj.bias");
      if (!qb.ok()) return qb.status();
      if (!kb.ok()) return kb.status();
      if (!vb.ok()) return vb.status();
      layer.qkv_bias = *std::move(qb);
      layer.qkv_bias.insert(layer.qkv_bias.end(), kb->begin(), kb->end());
      layer.qkv_bias.insert(layer.qkv_bias.end(), vb->begin(), vb->end());
    }
    auto gate_up = PackStacked(
        {{w.gate, s.intermediate_size}, {w.up, s.intermediate_size}}, h,
        options, name + "mlp.{gate,up}_proj");
    if (!gate_up.ok()) return gate_up.status();
    layer.gate_up = *std::move(gate_up);
    auto down = PackStacked({{w.down, h}}, s.intermediate_size, options,
                            name + "mlp.down_proj");
    if (!down.ok()) return down.status();
    layer.down = *std::move(down);
    model->layers_.push_back(std::move(layer));
  }
  auto final_norm = ToFloat(weights.final_norm, h, "model.norm");
  if (!final_norm.ok()) return final_norm.status();
  model->final_norm_ = *std::move(final_norm);
  const TensorRef& head =
      weights.lm_head.data != nullptr ? weights.lm_head : weights.embed_tokens;
  auto lm_head = PackStacked({{head, s.vocab_size}}, h, options, "lm_head");
  if (!lm_head.ok()) return lm_head.status();
  model->lm_head_ = std::make_unique<PackedWeight>(*std::move(lm_head));
  return model;
}

KvLayout KvLayoutFor(const LlamaShape& shape, int block_size, KvDtype dtype) {
  KvLayout layout;
  layout.num_layers = shape.num_layers;
  layout.num_kv_heads = shape.num_kv_heads;
  layout.head_dim = shape.head_dim;
  layout.block_size = block_size;
  layout.dtype = dtype;
  return layout;
}

KvLayout LlamaModel::KvLayoutFor(int block_size, KvDtype dtype) const {
  return longctx::KvLayoutFor(shape_, block_size, dtype);
}

namespace {

// LocalAttention is attention over the spans' own paged KV cache in `pool`:
// what one worker does on its own.
class LocalAttention : public LayerAttention {
 public:
  LocalAttention(const LlamaShape& shape, absl::Span<const SeqSpan> spans,
                 KvBlockPool& pool, DType compute)
      : shape_(shape), spans_(spans), pool_(pool), compute_(compute) {}

  absl::Status Attend(int layer, const float* qkv, int64_t qkv_stride,
                      float* out, int64_t out_stride) override {
    const KvLayout& kv = pool_.layout();
    const int block = kv.block_size;
    const int64_t hd = shape_.head_dim;
    const int64_t q_dim = int64_t{shape_.num_heads} * hd;
    const int64_t kv_dim = int64_t{shape_.num_kv_heads} * hd;
    const DType cache_dtype = CacheDType(kv.dtype);
    const size_t elem = kv.ElementBytes();
    // Write this step's keys and values into the sequences' blocks.
    int64_t t = 0;
    for (const SeqSpan& span : spans_) {
      for (size_t i = 0; i < span.tokens.size(); ++i, ++t) {
        const int64_t pos = span.start + static_cast<int64_t>(i);
        const int b = span.blocks[pos / block];
        const int64_t slot = pos % block;
        const float* k_src = qkv + t * qkv_stride + q_dim;
        const float* v_src = k_src + kv_dim;
        for (int head = 0; head < shape_.num_kv_heads; ++head) {
          const size_t offset =
              (static_cast<size_t>(head) * block + slot) * hd * elem;
          kernels::ConvertFromF32(k_src + head * hd, cache_dtype,
                                  pool_.K(b, layer) + offset, hd);
          kernels::ConvertFromF32(v_src + head * hd, cache_dtype,
                                  pool_.V(b, layer) + offset, hd);
        }
      }
    }
    // Attention of each span over its sequence's KV up to the span's last
    // token.
    t = 0;
    for (const SeqSpan& span : spans_) {
      const int64_t n = static_cast<int64_t>(span.tokens.size());
      const int64_t end = span.start + n;
      const int64_t num_blocks = (end + block - 1) / block;
      k_ptrs_.resize(static_cast<size_t>(num_blocks));
      v_ptrs_.resize(static_cast<size_t>(num_blocks));
      for (int64_t i = 0; i < num_blocks; ++i) {
        k_ptrs_[i] = pool_.K(span.blocks[i], layer);
        v_ptrs_[i] = pool_.V(span.blocks[i], layer);
      }
      kernels::PagedKv view;
      view.k_blocks = k_ptrs_.data();
      view.v_blocks = v_ptrs_.data();
      view.dtype = cache_dtype;
      view.block_size = block;
      view.num_kv_heads = shape_.num_kv_heads;
      view.head_dim = shape_.head_dim;
      view.num_tokens = end;
      view.start_pos = 0;
      kernels::AttentionParams params;
      params.num_heads = shape_.num_heads;
      params.q_start_pos = span.start;
      params.causal = true;
      params.compute = compute_;
      absl::Status status = kernels::FlashAttention(
          qkv + t * qkv_stride, n, qkv_stride, view, params,
          out + t * out_stride, out_stride, /*lse=*/nullptr);
      if (!status.ok()) return status;
      t += n;
    }
    return absl::OkStatus();
  }

 private:
  const LlamaShape& shape_;
  const absl::Span<const SeqSpan> spans_;
  KvBlockPool& pool_;
  const DType compute_;
  std::vector<const void*> k_ptrs_, v_ptrs_;
};

}  // namespace

DType CacheDType(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF16:
      return DType::kF16;
    case KvDtype::kF32:
      return DType::kF32;
    case KvDtype::kBf16:
      return DType::kBf16;
  }
  return DType::kF16;
}

absl::Status LlamaModel::Forward(absl::Span<const SeqSpan> spans,
                                 KvBlockPool& pool, float* logits) {
  const KvLayout& kv = pool.layout();
  if (kv.num_layers != shape_.num_layers ||
      kv.num_kv_heads != shape_.num_kv_heads ||
      kv.head_dim != shape_.head_dim) {
    return absl::InvalidArgumentError(
        "KV pool layout does not match the model");
  }
  ids_.clear();
  positions_.clear();
  logit_rows_.clear();
  for (const SeqSpan& span : spans) {
    const int64_t end = span.start + static_cast<int64_t>(span.tokens.size());
    if (static_cast<int64_t>(span.blocks.size()) * kv.block_size < end) {
      return absl::InvalidArgumentError(
          absl::StrCat("span up to position ", end, " has only ",
                       span.blocks.size(), " KV blocks of ", kv.block_size));
    }
    for (size_t i = 0; i < span.tokens.size(); ++i) {
      ids_.push_back(span.tokens[i]);
      positions_.push_back(span.start + static_cast<int32_t>(i));
    }
    if (span.want_logits && !span.tokens.empty()) {
      logit_rows_.push_back(static_cast<int64_t>(ids_.size()) - 1);
    }
  }
  if (ids_.empty()) return absl::OkStatus();
  LocalAttention attention(shape_, spans, pool, attention_compute());
  return RunTokens(ids_, positions_, attention, logit_rows_, logits);
}

absl::Status LlamaModel::RunTokens(absl::Span<const int32_t> ids,
                                   absl::Span<const int32_t> positions,
                                   LayerAttention& attention,
                                   absl::Span<const int64_t> logit_rows,
                                   float* logits) {
  const LlamaShape& s = shape_;
  if (ids.size() != positions.size()) {
    return absl::InvalidArgumentError("ids and positions differ in length");
  }
  if (options_.threads > 0) kernels::SetNumThreads(options_.threads);
  const int64_t h = s.hidden_size, hd = s.head_dim, ffn = s.intermediate_size;
  const int64_t q_dim = int64_t{s.num_heads} * hd;
  const int64_t kv_dim = int64_t{s.num_kv_heads} * hd;
  const int64_t qkv_dim = q_dim + 2 * kv_dim;
  const int64_t total = static_cast<int64_t>(ids.size());
  if (total == 0) {
    // Nothing to compute here, but the attention may exchange data with other
    // ranks layer by layer.
    for (int l = 0; l < s.num_layers; ++l) {
      absl::Status status =
          attention.Attend(l, nullptr, qkv_dim, nullptr, q_dim);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }
  auto grow = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  };
  grow(x_, total * h);
  grow(h_, total * h);
  grow(delta_, total * h);
  grow(qkv_, total * qkv_dim);
  grow(attn_, total * q_dim);
  grow(mlp_, total * 2 * ffn);
  grow(act_, total * ffn);
  absl::Status status =
      kernels::EmbeddingLookup(embed_.data(), embed_dtype_, s.vocab_size, h,
                               ids.data(), total, x_.data(), h);
  if (!status.ok()) return status;

  for (int l = 0; l < s.num_layers; ++l) {
    Layer& layer = layers_[l];
    // Input norm; from the second layer on it also adds the previous MLP
    // output.
    if (l == 0) {
      kernels::RmsNorm(x_.data(), h, layer.input_norm.data(), total, h,
                       s.rms_norm_eps, h_.data(), h);
    } else {
      kernels::AddRmsNorm(x_.data(), h, delta_.data(), h,
                          layer.input_norm.data(), total, h, s.rms_norm_eps,
                          h_.data(), h);
    }
    status = gemm_.Run(h_.data(), total, h, *layer.qkv,
                       layer.qkv_bias.empty() ? nullptr : layer.qkv_bias.data(),
                       qkv_.data(), qkv_dim);
    if (!status.ok()) return status;
    kernels::ApplyRope(inv_freq_.data(), s.head_dim, positions.data(), total,
                       qkv_.data(), qkv_dim, s.num_heads, qkv_.data() + q_dim,
                       qkv_dim, s.num_kv_heads);
    status = attention.Attend(l, qkv_.data(), qkv_dim, attn_.data(), q_dim);
    if (!status.ok()) return status;
    status = gemm_.Run(attn_.data(), total, q_dim, *layer.o, nullptr,
                       delta_.data(), h);
    if (!status.ok()) return status;
    kernels::AddRmsNorm(x_.data(), h, delta_.data(), h,
                        layer.post_attention_norm.data(), total, h,
                        s.rms_norm_eps, h_.data(), h);
    status = gemm_.Run(h_.data(), total, h, *layer.gate_up, nullptr,
                       mlp_.data(), 2 * ffn);
    if (!status.ok()) return status;
    // SwiGLU writes a contiguous activation: Gemm::Run would otherwise copy the
    // strided rows into a dense buffer first (oneDNN is slow on strided input).
    kernels::SwiGluFused(mlp_.data(), total, ffn, act_.data(), ffn);
    status = gemm_.Run(act_.data(), total, ffn, *layer.down, nullptr,
                       delta_.data(), h);
    if (!status.ok()) return status;
  }

  // Final norm and logits, only for the rows that want them.
  const int64_t wanted = static_cast<int64_t>(logit_rows.size());
  if (wanted == 0) return absl::OkStatus();
  grow(rows_, wanted * h);
  for (int64_t r = 0; r < wanted; ++r) {
    const int64_t row = logit_rows[r];
    if (row < 0 || row >= total) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit row ", row, " outside a batch of ", total));
    }
    for (int64_t j = 0; j < h; ++j) {
      rows_[r * h + j] = x_[row * h + j] + delta_[row * h + j];
    }
  }
  kernels::RmsNorm(rows_.data(), h, final_norm_.data(), wanted, h,
                   s.rms_norm_eps, rows_.data(), h);
  return gemm_.Run(rows_.data(), wanted, h, *lm_head_, nullptr, logits,
                   s.vocab_size);
}

}  // namespace longctx
