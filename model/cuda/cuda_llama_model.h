// CudaLlamaModel: the Llama-family decoder of llama_model.h on an NVIDIA GPU,
// behind the same ForwardModel interface, so the engine's continuous
// batching, chunked prefill, prefix cache, offload and restore work
// unchanged.
//
// Weights are uploaded once and converted on the device to the compute type
// (bf16 for --compute_precision=bf16, the default on a GPU; fp32 for fp32,
// which keeps every product in fp32 and matches the CPU engine to fp32
// rounding). The KV pool lives in the same GPU's memory (DeviceKvMemory) with
// the CPU pool's block layout and element type, so its blocks are the same
// bytes on either device.
//
// One step: token ids and the step's block tables go to the device in one
// copy; per layer the input norm writes the GEMM input, cuBLASLt computes the
// fused q|k|v projection, one kernel adds the bias, applies the rotary
// embedding and stores k and v in the pool, attention runs as the tensor-core
// prefill kernel for chunks and the split-KV decode kernel for single tokens
// (kernels/cuda/paged_attention_cuda.h), then the output projection, the
// post-attention norm, the fused gate|up projection, SwiGLU and the down
// projection; the final norm and the LM head run only for the rows whose
// logits are wanted, which come back to the host in fp32. A step made only of
// single-token decodes replays a CUDA graph captured for its batch-size
// bucket (1, 2, 4, ... up to max_batch), so a small model's decode is not
// bound by kernel launches.
#ifndef LONGCTX_MODEL_CUDA_CUDA_LLAMA_MODEL_H_
#define LONGCTX_MODEL_CUDA_CUDA_LLAMA_MODEL_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/forward_model.h"
#include "kernels/cuda/gemm_cuda.h"
#include "kernels/dtype.h"
#include "kernels/gemm.h"
#include "model/cuda/device_memory.h"
#include "model/llama_model.h"

namespace longctx::cuda {

// CudaModelOptions chooses how the model computes on the GPU.
struct CudaModelOptions {
  // The CUDA device (--device=cuda:N). Default: 0.
  int device = 0;
  // Precision of weights and GEMMs (--compute_precision). Default: bf16.
  kernels::ComputePrecision precision = kernels::ComputePrecision::kBf16;
  // Whether decode-only steps replay CUDA graphs (--cuda_graphs). Default:
  // true.
  bool cuda_graphs = true;
  // Largest decode batch a graph is captured for (the engine's --max_batch);
  // larger decode steps run without one. Default: 64.
  int max_graph_batch = 64;
  // Whether chunks of two or more tokens use the tensor-core prefill kernel
  // where it applies (head_dim 64 or 128, fp16 KV). Off sends every token
  // through the decode kernel: slower, for checking one against the other.
  // Default: true.
  bool tensor_core_attention = true;
};

// CudaLlamaModel is used from one thread at a time (the engine's).
class CudaLlamaModel : public ForwardModel {
 public:
  // Create uploads the weights to the device. INVALID_ARGUMENT for
  // inconsistent shapes or a missing tensor (as LlamaModel::Create),
  // FAILED_PRECONDITION without a usable device, RESOURCE_EXHAUSTED when the
  // weights do not fit.
  static absl::StatusOr<std::unique_ptr<CudaLlamaModel>> Create(
      const LlamaShape& shape, const LlamaWeights& weights,
      const CudaModelOptions& options);
  ~CudaLlamaModel() override;

  int vocab_size() const override { return shape_.vocab_size; }
  const LlamaShape& shape() const { return shape_; }
  const DeviceInfo& device() const { return device_; }
  // Device memory the weights take.
  size_t weight_bytes() const { return weight_bytes_; }

  // The layout of KV blocks this model writes.
  KvLayout KvLayoutFor(int block_size, KvDtype dtype) const;

  // Forward runs the spans; `pool` must be a pool in this model's device
  // memory (DeviceKvMemory). INVALID_ARGUMENT for spans inconsistent with the
  // pool or tokens outside the vocabulary (nothing runs then); INTERNAL
  // naming the step for a CUDA error, after which health() is not OK and
  // every later call fails the same way.
  absl::Status Forward(absl::Span<const SeqSpan> spans, KvBlockPool& pool,
                       float* logits) override;

  absl::Status health() const override { return failure_; }

  // Page-locked host memory the logits land in without a further copy.
  float* logits_buffer(int64_t rows) override;

  // ProfileStep runs `spans` as Forward does but never as a graph, timing
  // each kind of work on the device with CUDA events; returns milliseconds
  // per kind (summed over layers), in order of first appearance. For
  // benchmarks: the events cost a little time themselves.
  absl::StatusOr<std::vector<std::pair<std::string, double>>> ProfileStep(
      absl::Span<const SeqSpan> spans, KvBlockPool& pool, float* logits);

  // Steps that replayed a CUDA graph, and graphs captured so far.
  int64_t graph_steps() const { return graph_steps_; }
  int graphs() const { return static_cast<int>(graphs_.size()); }

 private:
  struct Layer {
    DeviceBuffer input_norm, post_norm;  // fp32 [hidden]
    DeviceBuffer qkv, o, gate_up, down;  // Compute type, [out, in].
    DeviceBuffer qkv_bias;               // fp32, empty when absent.
  };
  // Device buffers for a batch of up to `tokens` rows.
  struct Scratch {
    int64_t tokens = 0;
    DeviceBuffer x, delta;  // fp32 [T, hidden]: residual, layer output.
    DeviceBuffer act;       // Compute type [T, max(hidden, q_dim, ffn)].
    DeviceBuffer qkv;       // fp32 [T, q_dim + 2 kv_dim]
    DeviceBuffer q16;       // fp16 [T, q_dim]
    DeviceBuffer mlp;       // fp32 [T, 2 ffn]
    DeviceBuffer rope;      // float2 [T, head_dim / 2]
    DeviceBuffer logits;    // fp32 [T, vocab]
  };
  // Where one step's inputs sit in the metadata buffer (byte offsets).
  struct StepLayout {
    int64_t tokens = 0, logit_rows = 0;
    int prefill_seqs = 0, prefill_tiles = 0, decode_entries = 0;
    int64_t table_entries = 0;
    size_t ids = 0, positions = 0, kv_block = 0, kv_slot = 0, rows = 0;
    size_t seqs = 0, tiles = 0, q_row = 0, kv_len = 0, table_offset = 0;
    size_t tables = 0, bytes = 0;
  };
  // A captured decode step for batches of up to `batch` sequences.
  struct Graph {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    int splits = 1;
  };

  // Events between the steps of one eager forward call (ProfileStep).
  class Profiler {
   public:
    Profiler() = default;
    Profiler(const Profiler&) = delete;
    Profiler& operator=(const Profiler&) = delete;
    ~Profiler();
    void Mark(absl::string_view label, cudaStream_t stream);
    // Milliseconds from each mark to the next, summed by the later label.
    std::vector<std::pair<std::string, double>> Totals() const;

   private:
    std::vector<std::pair<std::string, cudaEvent_t>> marks_;
  };

  CudaLlamaModel(const LlamaShape& shape, const CudaModelOptions& options);

  absl::Status Upload(const TensorRef& t, int64_t elems, kernels::DType to,
                      DeviceBuffer& dst, const std::string& what);
  absl::Status UploadStacked(
      const std::vector<std::pair<TensorRef, int64_t>>& blocks, int64_t k,
      DeviceBuffer& dst, const std::string& what);
  absl::Status EnsureScratch(Scratch& s, int64_t tokens);
  absl::Status EnsureMeta(size_t bytes);
  absl::Status EnsureDecodeWorkspace(int64_t floats, DeviceBuffer& buffer);
  absl::Status Fail(absl::Status status);
  // Enqueues the whole step on stream_ over scratch `s` and metadata at
  // `meta` (device) laid out as `l`; `splits` for the decode kernel.
  absl::Status Enqueue(const Scratch& s, const uint8_t* meta,
                       const StepLayout& l, KvBlockPool& pool, int splits,
                       DeviceBuffer& decode_workspace);
  int SplitsFor(int64_t entries) const;
  absl::Status RunGraph(absl::Span<const SeqSpan> spans, KvBlockPool& pool,
                        float* logits);
  absl::Status RunEager(absl::Span<const SeqSpan> spans, KvBlockPool& pool,
                        int64_t tokens, int64_t logit_rows, float* logits);
  // Marks the end of a kind of work, `label`, when profiling.
  void Mark(absl::string_view label);

  const LlamaShape shape_;
  const CudaModelOptions options_;
  const kernels::DType dtype_;  // Of weights and GEMM inputs.
  DeviceInfo device_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<kernels::cuda::CudaGemm> gemm_;
  size_t weight_bytes_ = 0;

  DeviceBuffer embed_;  // Compute type [vocab, hidden].
  std::vector<Layer> layers_;
  DeviceBuffer final_norm_;  // fp32 [hidden]
  DeviceBuffer lm_head_;     // Compute type; empty when tied to embed_.
  DeviceBuffer inv_freq_;    // fp32 [head_dim / 2]

  Scratch scratch_;
  DeviceBuffer meta_;
  PinnedBuffer host_meta_;
  PinnedBuffer host_logits_;
  DeviceBuffer decode_workspace_;

  // Decode graphs share one scratch, metadata and workspace, laid out for
  // max_graph_batch sequences whatever the bucket.
  Scratch graph_scratch_;
  DeviceBuffer graph_meta_;
  DeviceBuffer graph_workspace_;
  int64_t graph_table_capacity_ = 0;  // Block-table entries in graph_meta_.
  const void* graph_pool_ = nullptr;  // The KV pool the graphs write.
  std::map<int, Graph> graphs_;       // By bucket.
  int64_t graph_steps_ = 0;

  absl::Status failure_;          // Not OK once a CUDA error happened.
  Profiler* profiler_ = nullptr;  // Set during ProfileStep.
};

}  // namespace longctx::cuda

#endif  // LONGCTX_MODEL_CUDA_CUDA_LLAMA_MODEL_H_
