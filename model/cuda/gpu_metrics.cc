#include "model/cuda/gpu_metrics.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/metric_family.h"

namespace longctx::cuda {
namespace {

class GpuMetrics : public prometheus::Collectable {
 public:
  GpuMetrics(const DeviceInfo& device, size_t weight_bytes,
             size_t kv_cache_bytes)
      : device_(device),
        weight_bytes_(weight_bytes),
        kv_cache_bytes_(kv_cache_bytes) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> families;
    const std::vector<prometheus::ClientMetric::Label> labels = {
        {"device", absl::StrCat(device_.index)}};
    auto gauge = [&](const char* name, const char* help, double value,
                     std::vector<prometheus::ClientMetric::Label> l) {
      prometheus::MetricFamily family;
      family.name = name;
      family.help = help;
      family.type = prometheus::MetricType::Gauge;
      prometheus::ClientMetric metric;
      metric.label = std::move(l);
      metric.gauge.value = value;
      family.metric.push_back(std::move(metric));
      families.push_back(std::move(family));
    };
    gauge("longctx_gpu_info",
          "The GPU this worker computes on; the value is always 1.", 1,
          {{"device", absl::StrCat(device_.index)}, {"name", device_.name}});
    // Measured now; the exposer's thread makes the device its own first.
    double used = 0, total = static_cast<double>(device_.total_bytes);
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaSetDevice(device_.index) == cudaSuccess &&
        cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      used = static_cast<double>(total_bytes - free_bytes);
      total = static_cast<double>(total_bytes);
    }
    gauge("longctx_gpu_memory_used_bytes",
          "Device memory in use on this worker's GPU (by every process).", used,
          labels);
    gauge("longctx_gpu_memory_total_bytes",
          "Device memory of this worker's GPU.", total, labels);
    gauge("longctx_gpu_weight_bytes", "Device memory the model's weights take.",
          static_cast<double>(weight_bytes_), labels);
    gauge("longctx_gpu_kv_cache_bytes",
          "Device memory of the KV cache (the block pool).",
          static_cast<double>(kv_cache_bytes_), labels);
    return families;
  }

 private:
  const DeviceInfo device_;
  const size_t weight_bytes_;
  const size_t kv_cache_bytes_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> NewGpuMetrics(const DeviceInfo& device,
                                                       size_t weight_bytes,
                                                       size_t kv_cache_bytes) {
  return std::make_shared<GpuMetrics>(device, weight_bytes, kv_cache_bytes);
}

}  // namespace longctx::cuda
