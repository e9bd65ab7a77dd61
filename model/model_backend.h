// LoadModelOnDevice: the model a worker serves and its KV pool, on the device
// --device names: the CPU (LlamaModel, KV pool in host memory) or a GPU
// (cuda/CudaLlamaModel, KV pool in the GPU's memory), behind one ForwardModel
// for the engine.
#ifndef LONGCTX_MODEL_MODEL_BACKEND_H_
#define LONGCTX_MODEL_MODEL_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/forward_model.h"
#include "engine/kv_block_pool.h"
#include "kernels/gemm.h"
#include "kvblock/hash128.h"
#include "kvblock/kv_layout.h"
#include "model/device_report.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "services/common/metrics_server.h"

namespace longctx {

// ParseDeviceFlag reads --device: "cpu" gives -1, "cuda" device 0, "cuda:N"
// device N. INVALID_ARGUMENT otherwise.
absl::StatusOr<int> ParseDeviceFlag(absl::string_view text);

// DeviceOptions are the worker's model and KV cache flags.
struct DeviceOptions {
  // -1 for the CPU, otherwise the CUDA device index (--device). Default: CPU.
  int device = -1;
  // GEMM precision (--compute_precision). Default: fp32 on the CPU; bf16 on
  // a GPU when unset.
  std::optional<kernels::ComputePrecision> precision;
  // How linear-layer weights are held (--weight_dtype); kInt8 on the CPU
  // only. Default: kAuto.
  kernels::WeightDtype weight_dtype = kernels::WeightDtype::kAuto;
  int threads = 0;  // CPU compute threads (--threads); 0 uses every CPU.
  int block_size = 256;
  KvDtype kv_dtype = KvDtype::kF16;
  // Bytes of the KV cache (--kv_cache_bytes); on a GPU, 0 takes 90% of the
  // device memory left after the weights.
  size_t kv_cache_bytes = size_t{2} << 30;
  bool kv_cache_prefault = true;  // Host pools only.
  bool cuda_graphs = true;        // GPU decode steps as CUDA graphs.
  int max_batch = 64;             // The engine's --max_batch.
};

// ModelOnDevice is a loaded model, its pool and how to report on them.
struct ModelOnDevice {
  std::unique_ptr<ForwardModel> model;
  // The same model when it runs on the CPU (a rank of a group needs it),
  // null on a GPU.
  LlamaModel* cpu_model = nullptr;
  std::unique_ptr<KvBlockPool> pool;
  // Thread-safe; called for status reports.
  std::function<DeviceReport()> report;
  std::string description;  // For the start-up log line.
  // What the served model's KV blocks are keyed and checked by
  // (ServedFingerprint of the checkpoint's).
  Hash128 fingerprint;
};

// ServedFingerprint is the fingerprint of the model a worker serves from a
// checkpoint whose weights have `weights_fingerprint`: the same, unless the
// weights are quantized at load (int8), which makes another model (its KV
// differs by more than rounding), so that its blocks are never restored by,
// and its workers never pooled with, workers of the checkpoint itself. Compute
// precision and device are left out: they change KV by rounding only, and
// blocks of a GPU rank and a CPU rank are valid for each other.
Hash128 ServedFingerprint(const Hash128& weights_fingerprint,
                          kernels::WeightDtype weight_dtype);

// LoadModelOnDevice builds the model from `source` and its KV pool on the
// device `options` names; on a GPU it adds the longctx_gpu_* gauges to
// `metrics` (may be null). UNIMPLEMENTED for int8 weights on a GPU;
// FAILED_PRECONDITION for --device=cuda in a build without CUDA
// (--config=cuda) or without a usable GPU; the model's and the pool's errors
// otherwise.
absl::StatusOr<ModelOnDevice> LoadModelOnDevice(const ModelSource& source,
                                                const DeviceOptions& options,
                                                MetricsServer* metrics);

}  // namespace longctx

#endif  // LONGCTX_MODEL_MODEL_BACKEND_H_
