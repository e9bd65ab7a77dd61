#include "model/cuda/cuda_llama_model.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/llama_ops_cuda.h"
#include "kernels/cuda/paged_attention_cuda.h"
#include "kernels/rope.h"
#include "services/common/logging.h"

namespace longctx::cuda {
namespace {

namespace kc = kernels::cuda;
using kernels::DType;

// Most tokens in one step (the prefill kernel's grid also takes at most
// 65535 tiles of 64 query rows).
constexpr int64_t kMaxStepTokens = int64_t{1} << 22;

// Bytes converted per piece while uploading weights.
constexpr int64_t kUploadPieceElems = int64_t{32} << 20;

size_t Align16(size_t n) { return (n + 15) & ~size_t{15}; }

absl::Status Missing(const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("model tensor missing: ", what));
}

// Returns from the enclosing function when a launch failed.
#define RETURN_IF_CUDA(call, what)                     \
  do {                                                 \
    const cudaError_t e_ = (call);                     \
    if (e_ != cudaSuccess) return CudaError(e_, what); \
  } while (0)

}  // namespace

CudaLlamaModel::CudaLlamaModel(const LlamaShape& shape,
                               const CudaModelOptions& options)
    : shape_(shape),
      options_(options),
      dtype_(options.precision == kernels::ComputePrecision::kFp32
                 ? DType::kF32
                 : DType::kBf16) {}

CudaLlamaModel::~CudaLlamaModel() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (auto& [bucket, graph] : graphs_) {
    if (graph.exec != nullptr) cudaGraphExecDestroy(graph.exec);
    if (graph.graph != nullptr) cudaGraphDestroy(graph.graph);
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status CudaLlamaModel::Upload(const TensorRef& t, int64_t elems, DType to,
                                    DeviceBuffer& dst,
                                    const std::string& what) {
  if (t.data == nullptr) return Missing(what);
  absl::Status status =
      dst.Allocate(static_cast<size_t>(elems) * kernels::DTypeSize(to), what);
  if (!status.ok()) return status;
  weight_bytes_ += dst.size();
  // The file's bytes go up in pieces and are converted on the device.
  DeviceBuffer piece;
  const size_t in_size = kernels::DTypeSize(t.dtype);
  status = piece.Allocate(
      static_cast<size_t>(std::min(elems, kUploadPieceElems)) * in_size,
      "uploading weights");
  if (!status.ok()) return status;
  for (int64_t done = 0; done < elems; done += kUploadPieceElems) {
    const int64_t n = std::min(kUploadPieceElems, elems - done);
    // On the model's stream, like the conversion that reads it: a plain
    // cudaMemcpy from pageable memory returns before its DMA is done, and
    // the model's non-blocking stream would not wait for it.
    RETURN_IF_CUDA(cudaMemcpyAsync(piece.get(),
                                   static_cast<const uint8_t*>(t.data) +
                                       static_cast<size_t>(done) * in_size,
                                   static_cast<size_t>(n) * in_size,
                                   cudaMemcpyHostToDevice, stream_),
                   absl::StrCat("uploading ", what));
    RETURN_IF_CUDA(
        kc::ConvertTensor(piece.get(), t.dtype, n,
                          dst.as<uint8_t>() + static_cast<size_t>(done) *
                                                  kernels::DTypeSize(to),
                          to, stream_),
        absl::StrCat("converting ", what));
    RETURN_IF_CUDA(cudaStreamSynchronize(stream_),
                   absl::StrCat("converting ", what));
  }
  return absl::OkStatus();
}

absl::Status CudaLlamaModel::UploadStacked(
    const std::vector<std::pair<TensorRef, int64_t>>& blocks, int64_t k,
    DeviceBuffer& dst, const std::string& what) {
  int64_t rows = 0;
  for (const auto& [tensor, n] : blocks) {
    if (tensor.data == nullptr) return Missing(what);
    rows += n;
  }
  const size_t elem = kernels::DTypeSize(dtype_);
  absl::Status status =
      dst.Allocate(static_cast<size_t>(rows * k) * elem, what);
  if (!status.ok()) return status;
  int64_t offset = 0;
  for (const auto& [tensor, n] : blocks) {
    DeviceBuffer part;
    status = Upload(tensor, n * k, dtype_, part, what);
    if (!status.ok()) return status;
    weight_bytes_ -= part.size();  // Counted once, in dst.
    RETURN_IF_CUDA(
        cudaMemcpyAsync(dst.as<uint8_t>() + offset * k * elem, part.get(),
                        part.size(), cudaMemcpyDeviceToDevice, stream_),
        absl::StrCat("stacking ", what));
    RETURN_IF_CUDA(cudaStreamSynchronize(stream_),
                   absl::StrCat("stacking ", what));
    offset += n;
  }
  weight_bytes_ += dst.size();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaLlamaModel>> CudaLlamaModel::Create(
    const LlamaShape& shape, const LlamaWeights& weights,
    const CudaModelOptions& options) {
  const LlamaShape& s = shape;
  if (s.hidden_size <= 0 || s.intermediate_size <= 0 || s.num_layers <= 0 ||
      s.num_heads <= 0 || s.num_kv_heads <= 0 || s.head_dim <= 0 ||
      s.head_dim % 2 != 0 || s.head_dim > 256 || s.vocab_size <= 0 ||
      s.num_heads % s.num_kv_heads != 0 || s.num_heads / s.num_kv_heads > 64 ||
      static_cast<int>(weights.layers.size()) != s.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model shape not supported on the GPU: hidden ", s.hidden_size,
        ", ffn ", s.intermediate_size, ", layers ", s.num_layers, " (",
        weights.layers.size(), " given), heads ", s.num_heads, ", kv heads ",
        s.num_kv_heads, ", head_dim ", s.head_dim,
        " (even, at most 256; at most 64 heads per kv head), vocab ",
        s.vocab_size));
  }
  if (options.max_graph_batch < 1) {
    return absl::InvalidArgumentError("max_graph_batch must be >= 1");
  }
  absl::StatusOr<DeviceInfo> device = QueryDevice(options.device);
  if (!device.ok()) return device.status();
  std::unique_ptr<CudaLlamaModel> model(new CudaLlamaModel(shape, options));
  model->device_ = *device;
  absl::Status status = CudaError(
      cudaStreamCreateWithFlags(&model->stream_, cudaStreamNonBlocking),
      "cudaStreamCreate");
  if (!status.ok()) return status;
  std::string error;
  model->gemm_ = kc::CudaGemm::Create(size_t{32} << 20, &error);
  if (model->gemm_ == nullptr) return absl::InternalError(error);

  const int64_t h = s.hidden_size, hd = s.head_dim;
  const int64_t q_dim = int64_t{s.num_heads} * hd;
  const int64_t kv_dim = int64_t{s.num_kv_heads} * hd;
  const int64_t ffn = s.intermediate_size;
  kernels::RopeParams rope = s.rope;
  rope.head_dim = s.head_dim;
  std::vector<float> inv_freq(static_cast<size_t>(hd / 2));
  status = kernels::ComputeRopeInvFreq(rope, inv_freq.data());
  if (!status.ok()) return status;
  status = model->Upload(TensorRef{inv_freq.data(), DType::kF32}, hd / 2,
                         DType::kF32, model->inv_freq_, "rope frequencies");
  if (!status.ok()) return status;

  status = model->Upload(weights.embed_tokens, s.vocab_size * h, model->dtype_,
                         model->embed_, "embed_tokens");
  if (!status.ok()) return status;
  for (int l = 0; l < s.num_layers; ++l) {
    const LlamaWeights::Layer& w = weights.layers[l];
    const std::string name = absl::StrCat("layers.", l, ".");
    Layer layer;
    status = model->Upload(w.input_norm, h, DType::kF32, layer.input_norm,
                           name + "input_layernorm");
    if (status.ok()) {
      status =
          model->Upload(w.post_attention_norm, h, DType::kF32, layer.post_norm,
                        name + "post_attention_layernorm");
    }
    if (status.ok()) {
      status =
          model->UploadStacked({{w.q, q_dim}, {w.k, kv_dim}, {w.v, kv_dim}}, h,
                               layer.qkv, name + "self_attn.{q,k,v}_proj");
    }
    if (status.ok()) {
      status = model->UploadStacked({{w.o, h}}, q_dim, layer.o,
                                    name + "self_attn.o_proj");
    }
    if (status.ok() && (w.q_bias.data != nullptr || w.k_bias.data != nullptr ||
                        w.v_bias.data != nullptr)) {
      std::vector<float> bias(static_cast<size_t>(q_dim + 2 * kv_dim));
      const std::pair<const TensorRef*, int64_t> parts[] = {
          {&w.q_bias, q_dim}, {&w.k_bias, kv_dim}, {&w.v_bias, kv_dim}};
      int64_t at = 0;
      for (const auto& [t, n] : parts) {
        if (t->data == nullptr) {
          return Missing(name + "self_attn.{q,k,v}_proj.bias");
        }
        kernels::ConvertToF32(t->dtype, t->data, bias.data() + at, n);
        at += n;
      }
      status = model->Upload(TensorRef{bias.data(), DType::kF32},
                             q_dim + 2 * kv_dim, DType::kF32, layer.qkv_bias,
                             name + "self_attn.{q,k,v}_proj.bias");
    }
    if (status.ok()) {
      status = model->UploadStacked({{w.gate, ffn}, {w.up, ffn}}, h,
                                    layer.gate_up, name + "mlp.{gate,up}_proj");
    }
    if (status.ok()) {
      status = model->UploadStacked({{w.down, h}}, ffn, layer.down,
                                    name + "mlp.down_proj");
    }
    if (!status.ok()) return status;
    model->layers_.push_back(std::move(layer));
  }
  status = model->Upload(weights.final_norm, h, DType::kF32, model->final_norm_,
                         "model.norm");
  if (!status.ok()) return status;
  if (weights.lm_head.data != nullptr) {
    status = model->Upload(weights.lm_head, s.vocab_size * h, model->dtype_,
                           model->lm_head_, "lm_head");
    if (!status.ok()) return status;
  }
  return model;
}

KvLayout CudaLlamaModel::KvLayoutFor(int block_size, KvDtype dtype) const {
  return longctx::KvLayoutFor(shape_, block_size, dtype);
}

absl::Status CudaLlamaModel::EnsureScratch(Scratch& sc, int64_t tokens) {
  if (sc.tokens >= tokens) return absl::OkStatus();
  // Grow by half again, so a slowly growing batch reallocates rarely.
  const int64_t t = std::max(tokens, sc.tokens + sc.tokens / 2);
  const LlamaShape& s = shape_;
  const int64_t h = s.hidden_size, hd = s.head_dim;
  const int64_t q_dim = int64_t{s.num_heads} * hd;
  const int64_t qkv_dim = q_dim + 2 * int64_t{s.num_kv_heads} * hd;
  const int64_t ffn = s.intermediate_size;
  const size_t elem = kernels::DTypeSize(dtype_);
  const size_t t_bytes = static_cast<size_t>(t);
  RETURN_IF_CUDA(cudaStreamSynchronize(stream_), "growing activations");
  sc.tokens = 0;
  for (auto [buffer, bytes] :
       std::initializer_list<std::pair<DeviceBuffer*, size_t>>{
           {&sc.x, t_bytes * h * 4},
           {&sc.delta, t_bytes * h * 4},
           {&sc.act, t_bytes * std::max({h, q_dim, ffn}) * elem},
           {&sc.qkv, t_bytes * qkv_dim * 4},
           {&sc.q16, t_bytes * q_dim * 2},
           {&sc.mlp, t_bytes * 2 * ffn * 4},
           {&sc.rope, t_bytes * (hd / 2) * sizeof(float2)},
           {&sc.logits, t_bytes * s.vocab_size * 4}}) {
    absl::Status status = buffer->Allocate(bytes, "activations");
    if (!status.ok()) return status;
  }
  sc.tokens = t;
  return absl::OkStatus();
}

absl::Status CudaLlamaModel::EnsureMeta(size_t bytes) {
  if (meta_.size() >= bytes && host_meta_.size() >= bytes) {
    return absl::OkStatus();
  }
  const size_t n = std::max(bytes, meta_.size() + meta_.size() / 2);
  RETURN_IF_CUDA(cudaStreamSynchronize(stream_), "growing step metadata");
  absl::Status status = meta_.Allocate(n, "step metadata");
  if (status.ok()) status = host_meta_.Allocate(n, "step metadata");
  return status;
}

absl::Status CudaLlamaModel::EnsureDecodeWorkspace(int64_t floats,
                                                   DeviceBuffer& buffer) {
  const size_t bytes = static_cast<size_t>(floats) * 4;
  if (buffer.size() >= bytes) return absl::OkStatus();
  RETURN_IF_CUDA(cudaStreamSynchronize(stream_), "growing decode workspace");
  return buffer.Allocate(std::max(bytes, buffer.size() + buffer.size() / 2),
                         "decode attention");
}

absl::Status CudaLlamaModel::Fail(absl::Status status) {
  if (failure_.ok()) {
    failure_ = absl::InternalError(absl::StrCat(
        "the GPU model failed and serves nothing more: ", status.message()));
    Log(LogLevel::kError, "%s", std::string(failure_.message()));
  }
  return status;
}

int CudaLlamaModel::SplitsFor(int64_t entries) const {
  // Thread blocks for about eight per multiprocessor: each works through
  // its keys tile after tile, so several per multiprocessor hide the loads'
  // latency.
  const int64_t blocks = entries * shape_.num_kv_heads;
  const int64_t want = (8 * int64_t{device_.sm_count} + blocks - 1) /
                       std::max<int64_t>(blocks, 1);
  return static_cast<int>(std::clamp<int64_t>(want, 1, 64));
}

absl::Status CudaLlamaModel::Enqueue(const Scratch& sc, const uint8_t* meta,
                                     const StepLayout& l, KvBlockPool& pool,
                                     int splits,
                                     DeviceBuffer& decode_workspace) {
  const LlamaShape& s = shape_;
  const int64_t T = l.tokens, R = l.logit_rows;
  const int64_t h = s.hidden_size, hd = s.head_dim;
  const int64_t q_dim = int64_t{s.num_heads} * hd;
  const int64_t kv_dim = int64_t{s.num_kv_heads} * hd;
  const int64_t qkv_dim = q_dim + 2 * kv_dim;
  const int64_t ffn = s.intermediate_size;
  const KvLayout& kv = pool.layout();
  auto at = [&](size_t offset) {
    return reinterpret_cast<const int32_t*>(meta + offset);
  };
  auto gemm = [&](const void* x, int64_t x_stride, const DeviceBuffer& w,
                  float* y, int64_t n, int64_t k, int64_t m, const char* what,
                  int layer) -> absl::Status {
    std::string error = gemm_->Run(dtype_, x, x_stride, w.get(), y, n, m, n, k,
                                   /*accumulate=*/false, stream_);
    if (error.empty()) {
      Mark(what);
      return absl::OkStatus();
    }
    return absl::InternalError(
        absl::StrCat("cuBLASLt in layer ", layer, "'s ", what, ": ", error));
  };
  float* x = sc.x.as<float>();
  float* delta = sc.delta.as<float>();
  float* qkv = sc.qkv.as<float>();
  float* mlp = sc.mlp.as<float>();
  void* act = sc.act.get();
  const float2* rope = sc.rope.as<float2>();

  RETURN_IF_CUDA(
      kc::EmbedRows(embed_.get(), dtype_, h, at(l.ids), T, x, stream_),
      "EmbedRows");
  RETURN_IF_CUDA(
      kc::RopeTable(inv_freq_.as<float>(), static_cast<int>(hd / 2),
                    at(l.positions), T, sc.rope.as<float2>(), stream_),
      "RopeTable");
  Mark("embedding, rotary table");
  kc::KvDest dest;
  dest.pool = pool.memory()->base();
  dest.block_bytes = static_cast<int64_t>(kv.BlockBytes());
  dest.block_size = kv.block_size;
  dest.kv_dtype = CacheDType(kv.dtype);
  dest.block_id = at(l.kv_block);
  dest.slot = at(l.kv_slot);
  kc::PagedPool view;
  view.pool = pool.memory()->base();
  view.block_bytes = dest.block_bytes;
  view.block_size = kv.block_size;
  view.num_kv_heads = s.num_kv_heads;
  view.head_dim = s.head_dim;
  view.dtype = dest.kv_dtype;
  const float eps = s.rms_norm_eps;
  if (l.decode_entries > 0) {
    absl::Status status = EnsureDecodeWorkspace(
        kc::DecodeWorkspaceFloats(l.decode_entries, s.num_heads, s.head_dim,
                                  splits),
        decode_workspace);
    if (!status.ok()) return status;
  }

  for (int li = 0; li < s.num_layers; ++li) {
    const Layer& w = layers_[li];
    RETURN_IF_CUDA(kc::NormRows(x, li == 0 ? nullptr : delta, nullptr, T, h,
                                w.input_norm.as<float>(), eps, li > 0, dtype_,
                                act, h, stream_),
                   absl::StrCat("layer ", li, "'s input NormRows"));
    Mark("norms");
    absl::Status status =
        gemm(act, h, w.qkv, qkv, qkv_dim, h, T, "q|k|v projection", li);
    if (!status.ok()) return status;
    dest.layer = li;
    RETURN_IF_CUDA(
        kc::QkvPost(qkv, T, s.num_heads, s.num_kv_heads, s.head_dim,
                    w.qkv_bias.size() > 0 ? w.qkv_bias.as<float>() : nullptr,
                    rope, l.prefill_tiles > 0 ? sc.q16.get() : nullptr, dest,
                    stream_),
        absl::StrCat("layer ", li, "'s QkvPost"));
    Mark("bias, rotary, KV store");
    view.layer = li;
    if (l.prefill_tiles > 0) {
      RETURN_IF_CUDA(
          kc::PrefillAttention(
              sc.q16.get(), q_dim,
              reinterpret_cast<const kc::PrefillSeq*>(meta + l.seqs),
              reinterpret_cast<const kc::PrefillTile*>(meta + l.tiles),
              l.prefill_tiles, at(l.tables), view, s.num_heads, 0.f, dtype_,
              act, q_dim, stream_),
          absl::StrCat("layer ", li, "'s PrefillAttention"));
      Mark("attention (prefill kernel)");
    }
    if (l.decode_entries > 0) {
      RETURN_IF_CUDA(
          kc::DecodeAttention(
              qkv, qkv_dim, at(l.q_row), at(l.kv_len), at(l.table_offset),
              l.decode_entries, at(l.tables), view, s.num_heads, 0.f, splits,
              decode_workspace.as<float>(), dtype_, act, q_dim, stream_),
          absl::StrCat("layer ", li, "'s DecodeAttention"));
      Mark("attention (decode kernel)");
    }
    status = gemm(act, q_dim, w.o, delta, h, q_dim, T, "output projection", li);
    if (!status.ok()) return status;
    RETURN_IF_CUDA(
        kc::NormRows(x, delta, nullptr, T, h, w.post_norm.as<float>(), eps,
                     true, dtype_, act, h, stream_),
        absl::StrCat("layer ", li, "'s post-attention NormRows"));
    Mark("norms");
    status =
        gemm(act, h, w.gate_up, mlp, 2 * ffn, h, T, "gate|up projection", li);
    if (!status.ok()) return status;
    RETURN_IF_CUDA(kc::SwiGluRows(mlp, T, ffn, dtype_, act, stream_),
                   absl::StrCat("layer ", li, "'s SwiGluRows"));
    Mark("SwiGLU");
    status = gemm(act, ffn, w.down, delta, h, ffn, T, "down projection", li);
    if (!status.ok()) return status;
  }
  if (R == 0) return absl::OkStatus();
  RETURN_IF_CUDA(
      kc::NormRows(x, delta, at(l.rows), R, h, final_norm_.as<float>(), eps,
                   false, dtype_, act, h, stream_),
      "the final NormRows");
  Mark("norms");
  const DeviceBuffer& head = lm_head_.size() > 0 ? lm_head_ : embed_;
  return gemm(act, h, head, sc.logits.as<float>(), s.vocab_size, h, R,
              "LM head", s.num_layers);
}

absl::Status CudaLlamaModel::Forward(absl::Span<const SeqSpan> spans,
                                     KvBlockPool& pool, float* logits) {
  if (!failure_.ok()) return failure_;
  const KvLayout& kv = pool.layout();
  if (pool.memory() == nullptr || pool.host_accessible() ||
      pool.memory()->device() != device_.index) {
    return absl::InvalidArgumentError(
        absl::StrCat("the GPU model on device ", device_.index,
                     " needs its KV pool in that device's memory"));
  }
  if (kv.num_layers != shape_.num_layers ||
      kv.num_kv_heads != shape_.num_kv_heads ||
      kv.head_dim != shape_.head_dim) {
    return absl::InvalidArgumentError(
        "KV pool layout does not match the model");
  }
  // Everything is checked before anything runs.
  const int B = kv.block_size;
  int64_t T = 0, R = 0, prefill_tiles = 0;
  bool all_single = true;
  for (const SeqSpan& span : spans) {
    const int64_t n = static_cast<int64_t>(span.tokens.size());
    const int64_t end = span.start + n;
    if (span.start < 0 || end > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat("span at positions [", span.start, ", ", end,
                       ") outside what the GPU model handles"));
    }
    if (static_cast<int64_t>(span.blocks.size()) * B < end) {
      return absl::InvalidArgumentError(
          absl::StrCat("span up to position ", end, " has only ",
                       span.blocks.size(), " KV blocks of ", B));
    }
    for (int64_t b = 0; b < (end + B - 1) / B; ++b) {
      if (span.blocks[b] < 0 || span.blocks[b] >= pool.capacity()) {
        return absl::InvalidArgumentError(
            absl::StrCat("KV block ", span.blocks[b], " outside a pool of ",
                         pool.capacity()));
      }
    }
    for (int32_t id : span.tokens) {
      if (id < 0 || id >= shape_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "token id ", id, " outside the vocabulary of ", shape_.vocab_size));
      }
    }
    T += n;
    if (n >= 2) prefill_tiles += (n + 63) / 64;
    if (span.want_logits && n > 0) ++R;
    all_single = all_single && n == 1;
  }
  if (T == 0) return absl::OkStatus();
  if (logits == reinterpret_cast<float*>(host_logits_.get()) &&
      host_logits_.size() <
          static_cast<size_t>(R) * static_cast<size_t>(shape_.vocab_size) * 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the step wants ", R, " rows of logits; logits_buffer gave room for ",
        host_logits_.size() / (static_cast<size_t>(shape_.vocab_size) * 4)));
  }
  if (T > kMaxStepTokens || prefill_tiles > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("a step of ", T, " tokens in ", spans.size(),
                     " spans; the GPU model takes at most ", kMaxStepTokens,
                     " tokens, in chunks of at most 65535 tiles of 64"));
  }
  absl::Status status =
      CudaError(cudaSetDevice(device_.index), "cudaSetDevice");
  if (!status.ok()) return Fail(status);
  if (options_.cuda_graphs && all_single && profiler_ == nullptr &&
      static_cast<int64_t>(spans.size()) <= options_.max_graph_batch) {
    status = RunGraph(spans, pool, logits);
  } else {
    status = RunEager(spans, pool, T, R, logits);
  }
  return status.ok() || !absl::IsInternal(status) ? status : Fail(status);
}

absl::Status CudaLlamaModel::RunEager(absl::Span<const SeqSpan> spans,
                                      KvBlockPool& pool, int64_t T, int64_t R,
                                      float* logits) {
  const KvLayout& kv = pool.layout();
  const int B = kv.block_size;
  absl::Status status;
  // The step's metadata, laid out in one host buffer.
  const bool tensor_cores =
      options_.tensor_core_attention &&
      kc::PrefillAttentionSupported(shape_.head_dim, CacheDType(kv.dtype));
  StepLayout l;
  l.tokens = T;
  l.logit_rows = R;
  for (const SeqSpan& span : spans) {
    const int64_t n = static_cast<int64_t>(span.tokens.size());
    if (n == 0) continue;
    if (tensor_cores && n >= 2) {
      ++l.prefill_seqs;
      l.prefill_tiles += static_cast<int>((n + kc::kPrefillTileRows - 1) /
                                          kc::kPrefillTileRows);
    } else {
      l.decode_entries += static_cast<int>(n);
    }
    l.table_entries += (span.start + n + B - 1) / B;
  }
  size_t off = 0;
  auto place = [&](size_t bytes) {
    const size_t at = off;
    off += Align16(bytes);
    return at;
  };
  l.ids = place(T * 4);
  l.positions = place(T * 4);
  l.kv_block = place(T * 4);
  l.kv_slot = place(T * 4);
  l.rows = place(R * 4);
  l.seqs = place(l.prefill_seqs * sizeof(kc::PrefillSeq));
  l.tiles = place(l.prefill_tiles * sizeof(kc::PrefillTile));
  l.q_row = place(l.decode_entries * 4);
  l.kv_len = place(l.decode_entries * 4);
  l.table_offset = place(l.decode_entries * 4);
  l.tables = place(l.table_entries * 4);
  l.bytes = off;
  status = EnsureMeta(l.bytes);
  if (status.ok()) status = EnsureScratch(scratch_, T);
  if (!status.ok()) return status;
  uint8_t* host = host_meta_.get();
  auto h32 = [&](size_t offset) {
    return reinterpret_cast<int32_t*>(host + offset);
  };
  auto* seqs = reinterpret_cast<kc::PrefillSeq*>(host + l.seqs);
  auto* tiles = reinterpret_cast<kc::PrefillTile*>(host + l.tiles);
  int64_t row = 0, r = 0, table = 0;
  int seq = 0, tile = 0, entry = 0;
  for (const SeqSpan& span : spans) {
    const int64_t n = static_cast<int64_t>(span.tokens.size());
    if (n == 0) continue;
    const int64_t end = span.start + n;
    const int32_t table_offset = static_cast<int32_t>(table);
    for (int64_t b = 0; b < (end + B - 1) / B; ++b) {
      h32(l.tables)[table++] = span.blocks[b];
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = span.start + i;
      h32(l.ids)[row + i] = span.tokens[i];
      h32(l.positions)[row + i] = static_cast<int32_t>(pos);
      h32(l.kv_block)[row + i] = span.blocks[pos / B];
      h32(l.kv_slot)[row + i] = static_cast<int32_t>(pos % B);
    }
    if (tensor_cores && n >= 2) {
      seqs[seq] = {static_cast<int32_t>(row), static_cast<int32_t>(n),
                   span.start, static_cast<int32_t>(end), table_offset};
      for (int64_t t0 = 0; t0 < n; t0 += kc::kPrefillTileRows) {
        tiles[tile++] = {seq, static_cast<int32_t>(t0)};
      }
      ++seq;
    } else {
      for (int64_t i = 0; i < n; ++i, ++entry) {
        h32(l.q_row)[entry] = static_cast<int32_t>(row + i);
        h32(l.kv_len)[entry] = static_cast<int32_t>(span.start + i + 1);
        h32(l.table_offset)[entry] = table_offset;
      }
    }
    if (span.want_logits) h32(l.rows)[r++] = static_cast<int32_t>(row + n - 1);
    row += n;
  }
  const int splits = SplitsFor(l.decode_entries);
  Mark("start");
  status = CudaError(cudaMemcpyAsync(meta_.get(), host, l.bytes,
                                     cudaMemcpyHostToDevice, stream_),
                     "copying the step's metadata");
  Mark("metadata upload");
  if (status.ok()) {
    status = Enqueue(scratch_, meta_.as<uint8_t>(), l, pool, splits,
                     decode_workspace_);
  }
  const size_t logit_bytes =
      static_cast<size_t>(R) * static_cast<size_t>(shape_.vocab_size) * 4;
  const bool into_ours = logits == reinterpret_cast<float*>(host_logits_.get());
  if (status.ok() && R > 0 && !into_ours && host_logits_.size() < logit_bytes) {
    status = CudaError(cudaStreamSynchronize(stream_), "the step");
    if (status.ok()) status = host_logits_.Allocate(logit_bytes, "logits");
  }
  if (status.ok() && R > 0) {
    status =
        CudaError(cudaMemcpyAsync(host_logits_.get(), scratch_.logits.get(),
                                  logit_bytes, cudaMemcpyDeviceToHost, stream_),
                  "copying logits to the host");
    Mark("logits download");
  }
  const absl::Status synced = CudaError(cudaStreamSynchronize(stream_),
                                        "the step (a kernel enqueued by it)");
  if (status.ok()) status = synced;
  if (!status.ok()) return status;
  if (R > 0 && !into_ours) std::memcpy(logits, host_logits_.get(), logit_bytes);
  return absl::OkStatus();
}

float* CudaLlamaModel::logits_buffer(int64_t rows) {
  const size_t bytes =
      static_cast<size_t>(std::max<int64_t>(rows, 1)) * shape_.vocab_size * 4;
  if (host_logits_.size() < bytes) {
    // Nothing of ours runs between steps: the buffer is free to replace.
    if (cudaStreamSynchronize(stream_) != cudaSuccess ||
        !host_logits_.Allocate(bytes, "logits").ok()) {
      return nullptr;
    }
  }
  return reinterpret_cast<float*>(host_logits_.get());
}

absl::StatusOr<std::vector<std::pair<std::string, double>>>
CudaLlamaModel::ProfileStep(absl::Span<const SeqSpan> spans, KvBlockPool& pool,
                            float* logits) {
  Profiler profiler;
  profiler_ = &profiler;
  const absl::Status status = Forward(spans, pool, logits);
  profiler_ = nullptr;
  if (!status.ok()) return status;
  return profiler.Totals();
}

void CudaLlamaModel::Mark(absl::string_view label) {
  if (profiler_ != nullptr) profiler_->Mark(label, stream_);
}

CudaLlamaModel::Profiler::~Profiler() {
  for (auto& [label, event] : marks_) cudaEventDestroy(event);
}

void CudaLlamaModel::Profiler::Mark(absl::string_view label,
                                    cudaStream_t stream) {
  cudaEvent_t event;
  if (cudaEventCreate(&event) != cudaSuccess) return;
  cudaEventRecord(event, stream);
  marks_.emplace_back(std::string(label), event);
}

std::vector<std::pair<std::string, double>> CudaLlamaModel::Profiler::Totals()
    const {
  std::vector<std::pair<std::string, double>> totals;
  for (size_t i = 1; i < marks_.size(); ++i) {
    float ms = 0;
    cudaEventSynchronize(marks_[i].second);
    cudaEventElapsedTime(&ms, marks_[i - 1].second, marks_[i].second);
    auto it = std::find_if(totals.begin(), totals.end(), [&](const auto& t) {
      return t.first == marks_[i].first;
    });
    if (it == totals.end()) {
      totals.emplace_back(marks_[i].first, ms);
    } else {
      it->second += ms;
    }
  }
  return totals;
}

absl::Status CudaLlamaModel::RunGraph(absl::Span<const SeqSpan> spans,
                                      KvBlockPool& pool, float* logits) {
  const int E = static_cast<int>(spans.size());
  const int max_batch = options_.max_graph_batch;
  int bucket = 1;
  while (bucket < E) bucket *= 2;
  bucket = std::min(bucket, max_batch);
  const int B = pool.layout().block_size;
  // The graphs' fixed layout: arrays for max_batch sequences, then their
  // block tables (each sequence at most the whole pool).
  StepLayout l;
  size_t off = 0;
  auto place = [&](size_t bytes) {
    const size_t at = off;
    off += Align16(bytes);
    return at;
  };
  l.ids = place(max_batch * 4);
  l.positions = place(max_batch * 4);
  l.kv_block = place(max_batch * 4);
  l.kv_slot = place(max_batch * 4);
  l.rows = place(max_batch * 4);
  l.q_row = place(max_batch * 4);
  l.kv_len = place(max_batch * 4);
  l.table_offset = place(max_batch * 4);
  l.tables = off;
  const int64_t table_capacity = int64_t{max_batch} * pool.capacity();
  absl::Status status;
  if (graph_meta_.size() == 0 || graph_table_capacity_ < table_capacity ||
      graph_pool_ != pool.memory()->base()) {
    // First use, or another pool: new buffers, and graphs that use them.
    for (auto& [b, graph] : graphs_) {
      cudaGraphExecDestroy(graph.exec);
      cudaGraphDestroy(graph.graph);
    }
    graphs_.clear();
    status = graph_meta_.Allocate(l.tables + table_capacity * 4,
                                  "decode graph metadata");
    if (status.ok()) status = EnsureScratch(graph_scratch_, max_batch);
    if (status.ok()) {
      status = EnsureDecodeWorkspace(
          kc::DecodeWorkspaceFloats(max_batch, shape_.num_heads,
                                    shape_.head_dim, 64),
          graph_workspace_);
    }
    if (!status.ok()) return status;
    graph_table_capacity_ = table_capacity;
    graph_pool_ = pool.memory()->base();
  }
  status = EnsureMeta(l.tables + table_capacity * 4);
  if (!status.ok()) return status;
  uint8_t* host = host_meta_.get();
  auto h32 = [&](size_t offset) {
    return reinterpret_cast<int32_t*>(host + offset);
  };
  int64_t table = 0;
  for (int e = 0; e < bucket; ++e) {
    h32(l.rows)[e] = e;
    h32(l.q_row)[e] = e;
    if (e >= E) {  // Padding: no key, no KV written.
      h32(l.ids)[e] = 0;
      h32(l.positions)[e] = 0;
      h32(l.kv_block)[e] = -1;
      h32(l.kv_slot)[e] = 0;
      h32(l.kv_len)[e] = 0;
      h32(l.table_offset)[e] = 0;
      continue;
    }
    const SeqSpan& span = spans[e];
    const int64_t pos = span.start;
    h32(l.ids)[e] = span.tokens[0];
    h32(l.positions)[e] = static_cast<int32_t>(pos);
    h32(l.kv_block)[e] = span.blocks[pos / B];
    h32(l.kv_slot)[e] = static_cast<int32_t>(pos % B);
    h32(l.kv_len)[e] = static_cast<int32_t>(pos + 1);
    h32(l.table_offset)[e] = static_cast<int32_t>(table);
    for (int64_t b = 0; b <= pos / B; ++b) {
      h32(l.tables)[table++] = span.blocks[b];
    }
  }
  l.tokens = bucket;
  l.logit_rows = bucket;
  l.decode_entries = bucket;
  const int splits = SplitsFor(bucket);
  status =
      CudaError(cudaMemcpyAsync(graph_meta_.get(), host, l.tables + table * 4,
                                cudaMemcpyHostToDevice, stream_),
                "copying the step's metadata");
  if (!status.ok()) return status;
  auto it = graphs_.find(bucket);
  if (it != graphs_.end() && it->second.splits == splits) {
    status = CudaError(cudaGraphLaunch(it->second.exec, stream_),
                       "cudaGraphLaunch of a decode step");
  } else {
    // This step runs directly (which also plans its GEMMs); then the same
    // work is captured for the next steps of this bucket.
    status = Enqueue(graph_scratch_, graph_meta_.as<uint8_t>(), l, pool, splits,
                     graph_workspace_);
    Graph graph;
    graph.splits = splits;
    if (status.ok()) {
      status = CudaError(
          cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
          "cudaStreamBeginCapture");
    }
    if (status.ok()) {
      absl::Status captured = Enqueue(graph_scratch_, graph_meta_.as<uint8_t>(),
                                      l, pool, splits, graph_workspace_);
      status = CudaError(cudaStreamEndCapture(stream_, &graph.graph),
                         "cudaStreamEndCapture");
      if (status.ok()) status = captured;
    }
    if (status.ok()) {
      status = CudaError(cudaGraphInstantiate(&graph.exec, graph.graph, 0),
                         "cudaGraphInstantiate");
    }
    if (!status.ok()) return status;
    if (it != graphs_.end()) {
      cudaGraphExecDestroy(it->second.exec);
      cudaGraphDestroy(it->second.graph);
      graphs_.erase(it);
    }
    graphs_.emplace(bucket, graph);
  }
  // Only the rows of the spans that want logits come back, packed in span
  // order: the caller's buffer (maybe ours, from logits_buffer) holds that
  // many rows and no more.
  const size_t row_bytes = static_cast<size_t>(shape_.vocab_size) * 4;
  size_t rows = 0;
  for (const SeqSpan& span : spans) rows += span.want_logits ? 1 : 0;
  const bool into_ours = logits == reinterpret_cast<float*>(host_logits_.get());
  if (status.ok() && !into_ours && host_logits_.size() < rows * row_bytes) {
    status = CudaError(cudaStreamSynchronize(stream_), "the decode step");
    if (status.ok()) status = host_logits_.Allocate(rows * row_bytes, "logits");
  }
  const uint8_t* device_rows =
      reinterpret_cast<const uint8_t*>(graph_scratch_.logits.get());
  if (status.ok() && rows == static_cast<size_t>(E)) {
    status = CudaError(
        cudaMemcpyAsync(host_logits_.get(), device_rows, rows * row_bytes,
                        cudaMemcpyDeviceToHost, stream_),
        "copying logits to the host");
  } else if (status.ok()) {
    size_t out = 0;
    for (int e = 0; e < E && status.ok(); ++e) {
      if (!spans[e].want_logits) continue;
      status = CudaError(cudaMemcpyAsync(host_logits_.get() + out++ * row_bytes,
                                         device_rows + e * row_bytes, row_bytes,
                                         cudaMemcpyDeviceToHost, stream_),
                         "copying logits to the host");
    }
  }
  const absl::Status synced =
      CudaError(cudaStreamSynchronize(stream_),
                "the decode step (a kernel of its CUDA graph)");
  if (status.ok()) status = synced;
  if (!status.ok()) return status;
  if (!into_ours && rows > 0) {
    std::memcpy(logits, host_logits_.get(), rows * row_bytes);
  }
  ++graph_steps_;
  return absl::OkStatus();
}

}  // namespace longctx::cuda
