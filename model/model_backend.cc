#include "model/model_backend.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

#ifdef LONGCTX_WITH_CUDA
#include "model/cuda/cuda_llama_model.h"
#include "model/cuda/device_memory.h"
#include "model/cuda/gpu_metrics.h"
#endif

namespace longctx {
namespace {

absl::StatusOr<ModelOnDevice> LoadOnCpu(const ModelSource& source,
                                        const DeviceOptions& options) {
  LlamaModelOptions model_options;
  model_options.precision =
      options.precision.value_or(kernels::ComputePrecision::kFp32);
  model_options.weight_dtype = options.weight_dtype;
  model_options.threads = options.threads;
  auto model = LlamaModel::Create(source.shape, source.weights, model_options);
  if (!model.ok()) return model.status();
  auto pool = KvBlockPool::Create(
      (*model)->KvLayoutFor(options.block_size, options.kv_dtype),
      options.kv_cache_bytes, options.kv_cache_prefault);
  if (!pool.ok()) return pool.status();
  ModelOnDevice loaded;
  loaded.cpu_model = model->get();
  loaded.model = *std::move(model);
  loaded.pool = *std::move(pool);
  const int64_t kv_bytes =
      int64_t{loaded.pool->capacity()} *
      static_cast<int64_t>(loaded.pool->layout().BlockBytes());
  loaded.report = [kv_bytes] {
    DeviceReport report;
    report.device = "cpu";
    report.kv_cache_bytes = kv_bytes;
    return report;
  };
  loaded.description = "cpu";
  return loaded;
}

#ifdef LONGCTX_WITH_CUDA
absl::StatusOr<ModelOnDevice> LoadOnGpu(const ModelSource& source,
                                        const DeviceOptions& options,
                                        MetricsServer* metrics) {
  if (options.kv_dtype == KvDtype::kBf16) {
    return absl::UnimplementedError(
        "--kv_dtype=bf16 is for CPUs (AVX512_BF16); on a GPU use f16 or f32");
  }
  cuda::CudaModelOptions model_options;
  model_options.device = options.device;
  model_options.precision =
      options.precision.value_or(kernels::ComputePrecision::kBf16);
  model_options.cuda_graphs = options.cuda_graphs;
  model_options.max_graph_batch = options.max_batch;
  auto model =
      cuda::CudaLlamaModel::Create(source.shape, source.weights, model_options);
  if (!model.ok()) return model.status();
  const KvLayout layout =
      (*model)->KvLayoutFor(options.block_size, options.kv_dtype);
  size_t kv_bytes = options.kv_cache_bytes;
  if (kv_bytes == 0) {
    auto device = cuda::QueryDevice(options.device);
    if (!device.ok()) return device.status();
    // Room for the activations of a step and the decode graphs stays free.
    kv_bytes = device->free_bytes / 10 * 9;
  }
  kv_bytes = kv_bytes / layout.BlockBytes() * layout.BlockBytes();
  auto memory = cuda::DeviceKvMemory::Create(options.device, kv_bytes);
  if (!memory.ok()) {
    return absl::Status(
        memory.status().code(),
        absl::StrCat(memory.status().message(), "; lower --kv_cache_bytes"));
  }
  auto pool = KvBlockPool::CreateIn(layout, *std::move(memory));
  if (!pool.ok()) return pool.status();
  const cuda::DeviceInfo info = (*model)->device();
  const int64_t kv_total =
      int64_t{(*pool)->capacity()} * static_cast<int64_t>(layout.BlockBytes());
  const std::string name = absl::StrCat("cuda:", info.index, " ", info.name);
  ModelOnDevice loaded;
  loaded.report = [name, index = info.index, kv_total] {
    DeviceReport report;
    report.device = name;
    report.kv_cache_bytes = kv_total;
    auto now = cuda::QueryDevice(index);
    if (now.ok()) {
      report.memory_total_bytes = static_cast<int64_t>(now->total_bytes);
      report.memory_used_bytes =
          static_cast<int64_t>(now->total_bytes - now->free_bytes);
    }
    return report;
  };
  if (metrics != nullptr) {
    metrics->AddCollectable(cuda::NewGpuMetrics(info, (*model)->weight_bytes(),
                                                static_cast<size_t>(kv_total)));
  }
  loaded.description = absl::StrFormat(
      "%s, %s, weights %.2f GiB, CUDA graphs %s", name,
      model_options.precision == kernels::ComputePrecision::kBf16 ? "bf16"
                                                                  : "fp32",
      (*model)->weight_bytes() / double(1 << 30),
      options.cuda_graphs ? "on" : "off");
  loaded.model = *std::move(model);
  loaded.pool = *std::move(pool);
  return loaded;
}
#endif

}  // namespace

absl::StatusOr<int> ParseDeviceFlag(absl::string_view text) {
  const absl::string_view flag = text;
  if (text == "cpu") return -1;
  if (text == "cuda") return 0;
  int index = -1;
  if (absl::ConsumePrefix(&text, "cuda:") && absl::SimpleAtoi(text, &index) &&
      index >= 0) {
    return index;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--device=", flag, " must be cpu, cuda or cuda:N (N a device index)"));
}

Hash128 ServedFingerprint(const Hash128& weights_fingerprint,
                          kernels::WeightDtype weight_dtype) {
  if (weight_dtype != kernels::WeightDtype::kInt8) return weights_fingerprint;
  Hasher128 hasher;
  hasher.Update(weights_fingerprint);
  hasher.Update(absl::string_view("longctx weights quantized: int8 per row"));
  return hasher.Finish();
}

absl::StatusOr<ModelOnDevice> LoadModelOnDevice(const ModelSource& source,
                                                const DeviceOptions& options,
                                                MetricsServer* metrics) {
  absl::StatusOr<ModelOnDevice> loaded;
  if (options.device < 0) {
    loaded = LoadOnCpu(source, options);
  } else if (options.weight_dtype == kernels::WeightDtype::kInt8) {
    return absl::UnimplementedError(
        "--weight_dtype=int8 runs on the CPU only (--device=cpu); on a GPU "
        "use --weight_dtype=auto");
  } else {
#ifdef LONGCTX_WITH_CUDA
    loaded = LoadOnGpu(source, options, metrics);
#else
    (void)metrics;
    return absl::FailedPreconditionError(
        "--device=cuda needs a worker built with CUDA (bazel build "
        "--config=cuda //services/worker); this one runs on the CPU only");
#endif
  }
  if (loaded.ok()) {
    loaded->fingerprint =
        ServedFingerprint(source.fingerprint, options.weight_dtype);
  }
  return loaded;
}

}  // namespace longctx
