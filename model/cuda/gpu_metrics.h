// The longctx_gpu_* gauges of a GPU worker, measured at each scrape:
//
//   longctx_gpu_info{device, name}        1 (which GPU this rank computes on)
//   longctx_gpu_memory_used_bytes         device memory in use (all processes)
//   longctx_gpu_memory_total_bytes        device memory in all
//   longctx_gpu_weight_bytes              the model's weights on the device
//   longctx_gpu_kv_cache_bytes            the KV pool on the device
#ifndef LONGCTX_MODEL_CUDA_GPU_METRICS_H_
#define LONGCTX_MODEL_CUDA_GPU_METRICS_H_

#include <cstddef>
#include <memory>

#include "model/cuda/device_memory.h"
#include "prometheus/collectable.h"

namespace longctx::cuda {

// NewGpuMetrics returns the collectable for `device` (thread-safe; each
// Collect asks the driver for the memory in use).
std::shared_ptr<prometheus::Collectable> NewGpuMetrics(const DeviceInfo& device,
                                                       size_t weight_bytes,
                                                       size_t kv_cache_bytes);

}  // namespace longctx::cuda

#endif  // LONGCTX_MODEL_CUDA_GPU_METRICS_H_
