// Device memory for the worker's GPU path: CUDA errors as absl::Status, a
// device buffer that frees itself, page-locked host buffers, and the KV
// pool's memory on a GPU (KvBlockMemory).
#ifndef LONGCTX_MODEL_CUDA_DEVICE_MEMORY_H_
#define LONGCTX_MODEL_CUDA_DEVICE_MEMORY_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "engine/kv_block_pool.h"

namespace longctx::cuda {

// CudaError is OK for cudaSuccess, otherwise INTERNAL naming `what` (the
// kernel or call) and CUDA's description of the error.
absl::Status CudaError(cudaError_t error, absl::string_view what);

// DeviceInfo describes a GPU.
struct DeviceInfo {
  int index = 0;
  std::string name;            // e.g. "NVIDIA H200".
  int sm_count = 0;            // Streaming multiprocessors.
  int compute_capability = 0;  // e.g. 90.
  size_t total_bytes = 0;      // Device memory.
  size_t free_bytes = 0;       // At the time of the call.
};

// QueryDevice makes `index` the calling thread's current device and describes
// it. FAILED_PRECONDITION when there is no such device (or no driver).
absl::StatusOr<DeviceInfo> QueryDevice(int index);

// DeviceBuffer owns device memory (cudaMalloc); empty when default-built.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;

  // Allocate frees what the buffer held and takes `bytes` (at least 1) on
  // the current device. RESOURCE_EXHAUSTED naming `what` when it cannot.
  absl::Status Allocate(size_t bytes, absl::string_view what);
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// PinnedBuffer owns page-locked host memory (cudaHostAlloc), which copies to
// and from the device run at full speed and asynchronously.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  absl::Status Allocate(size_t bytes, absl::string_view what);
  uint8_t* get() const { return ptr_; }
  size_t size() const { return bytes_; }

 private:
  uint8_t* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// DeviceKvMemory is a KV pool's blocks in one allocation of device memory.
// CopyOut and CopyIn each have their own stream (non-blocking: they run
// beside the computation's stream) and page-locked staging buffers used two
// at a time, so the device copy of one piece overlaps the host copy of the
// previous one. Thread-safe: a CopyOut and a CopyIn run concurrently; two
// CopyOuts (or CopyIns) take turns.
class DeviceKvMemory : public KvBlockMemory {
 public:
  // Create allocates `bytes` on device `device` (prefilled with zeros, so a
  // never-written block reads as zeros, as in host memory).
  // RESOURCE_EXHAUSTED when the device has no room.
  static absl::StatusOr<std::unique_ptr<DeviceKvMemory>> Create(int device,
                                                                size_t bytes);
  ~DeviceKvMemory() override;

  uint8_t* base() override { return buffer_.as<uint8_t>(); }
  size_t size() const override { return buffer_.size(); }
  bool host_accessible() const override { return false; }
  int device() const override { return device_; }
  absl::Status CopyOut(size_t offset, size_t bytes, void* dst) override;
  absl::Status CopyIn(const void* src, size_t offset, size_t bytes) override;

 private:
  // One direction's stream and staging.
  struct Channel {
    absl::Mutex mu;
    cudaStream_t stream ABSL_GUARDED_BY(mu) = nullptr;
    cudaEvent_t done[2] ABSL_GUARDED_BY(mu) = {nullptr, nullptr};
    PinnedBuffer staging[2] ABSL_GUARDED_BY(mu);
  };

  DeviceKvMemory() = default;
  absl::Status InitChannel(Channel& channel);

  int device_ = 0;
  DeviceBuffer buffer_;
  Channel out_;
  Channel in_;
};

}  // namespace longctx::cuda

#endif  // LONGCTX_MODEL_CUDA_DEVICE_MEMORY_H_
