// DeviceReport: what a worker rank says about the device it computes on, in
// its status (proto/worker.proto WorkerStatus).
#ifndef LONGCTX_MODEL_DEVICE_REPORT_H_
#define LONGCTX_MODEL_DEVICE_REPORT_H_

#include <cstdint>
#include <string>

namespace longctx {

struct DeviceReport {
  std::string device;              // "cpu", or e.g. "cuda:0 NVIDIA H200".
  int64_t memory_used_bytes = 0;   // Device memory in use (0 on the CPU).
  int64_t memory_total_bytes = 0;  // Device memory in all (0 on the CPU).
  int64_t kv_cache_bytes = 0;      // Bytes of the KV pool.
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_DEVICE_REPORT_H_
