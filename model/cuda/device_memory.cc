#include "model/cuda/device_memory.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace longctx::cuda {
namespace {

// Staging pieces: large enough to keep the copy engine busy, small enough
// that the host copy of one overlaps the device copy of the next.
constexpr size_t kStagingBytes = size_t{8} << 20;

}  // namespace

absl::Status CudaError(cudaError_t error, absl::string_view what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CUDA error in ", what, ": ",
                                          cudaGetErrorName(error), " (",
                                          cudaGetErrorString(error), ")"));
}

absl::StatusOr<DeviceInfo> QueryDevice(int index) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device usable: ", cudaGetErrorString(e)));
  }
  if (index < 0 || index >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", index,
                     " does not exist (this machine has ", count, ")"));
  }
  absl::Status status = CudaError(cudaSetDevice(index), "cudaSetDevice");
  if (!status.ok()) return status;
  cudaDeviceProp prop{};
  status = CudaError(cudaGetDeviceProperties(&prop, index),
                     "cudaGetDeviceProperties");
  if (!status.ok()) return status;
  DeviceInfo info;
  info.index = index;
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.compute_capability = prop.major * 10 + prop.minor;
  status = CudaError(cudaMemGetInfo(&info.free_bytes, &info.total_bytes),
                     "cudaMemGetInfo");
  if (!status.ok()) return status;
  return info;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

absl::Status DeviceBuffer::Allocate(size_t bytes, absl::string_view what) {
  if (ptr_ != nullptr) cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
  const cudaError_t e = cudaMalloc(&ptr_, std::max<size_t>(bytes, 1));
  if (e != cudaSuccess) {
    ptr_ = nullptr;
    cudaGetLastError();  // Out of memory is not sticky: clear it.
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes, " bytes of GPU memory for ",
                     what, ": ", cudaGetErrorString(e)));
  }
  bytes_ = bytes;
  return absl::OkStatus();
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_ != nullptr) cudaFreeHost(ptr_);
}

absl::Status PinnedBuffer::Allocate(size_t bytes, absl::string_view what) {
  if (ptr_ != nullptr) cudaFreeHost(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
  void* p = nullptr;
  const cudaError_t e =
      cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes, " bytes of page-locked host memory for ",
        what, ": ", cudaGetErrorString(e)));
  }
  ptr_ = static_cast<uint8_t*>(p);
  bytes_ = bytes;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DeviceKvMemory>> DeviceKvMemory::Create(
    int device, size_t bytes) {
  std::unique_ptr<DeviceKvMemory> memory(new DeviceKvMemory);
  memory->device_ = device;
  absl::Status status = CudaError(cudaSetDevice(device), "cudaSetDevice");
  if (status.ok()) status = memory->buffer_.Allocate(bytes, "the KV cache");
  if (status.ok()) {
    // Finished before any stream of the model's touches the blocks: a
    // memset is asynchronous, and those streams do not wait for the default
    // stream.
    status = CudaError(cudaMemset(memory->buffer_.get(), 0, bytes),
                       "cudaMemset of the KV cache");
    if (status.ok()) {
      status = CudaError(cudaDeviceSynchronize(), "cudaMemset of the KV cache");
    }
  }
  if (status.ok()) status = memory->InitChannel(memory->out_);
  if (status.ok()) status = memory->InitChannel(memory->in_);
  if (!status.ok()) return status;
  return memory;
}

absl::Status DeviceKvMemory::InitChannel(Channel& channel) {
  absl::MutexLock lock(&channel.mu);
  absl::Status status = CudaError(
      cudaStreamCreateWithFlags(&channel.stream, cudaStreamNonBlocking),
      "cudaStreamCreate for KV copies");
  for (int i = 0; status.ok() && i < 2; ++i) {
    status = CudaError(
        cudaEventCreateWithFlags(&channel.done[i], cudaEventDisableTiming),
        "cudaEventCreate for KV copies");
    if (status.ok()) {
      status = channel.staging[i].Allocate(kStagingBytes, "KV copies");
    }
  }
  return status;
}

DeviceKvMemory::~DeviceKvMemory() {
  for (Channel* channel : {&out_, &in_}) {
    absl::MutexLock lock(&channel->mu);
    if (channel->stream != nullptr) {
      cudaStreamSynchronize(channel->stream);
      cudaStreamDestroy(channel->stream);
    }
    for (cudaEvent_t event : channel->done) {
      if (event != nullptr) cudaEventDestroy(event);
    }
  }
}

absl::Status DeviceKvMemory::CopyOut(size_t offset, size_t bytes, void* dst) {
  if (offset > size() || bytes > size() - offset) {
    return absl::InvalidArgumentError("KV copy outside the device's pool");
  }
  absl::MutexLock lock(&out_.mu);
  absl::Status status = CudaError(cudaSetDevice(device_), "cudaSetDevice");
  // Piece i goes device -> staging[i % 2] on the stream; while it travels,
  // the host copies piece i - 1 out of the other staging buffer.
  const size_t pieces = (bytes + kStagingBytes - 1) / kStagingBytes;
  auto piece_bytes = [&](size_t i) {
    return std::min(kStagingBytes, bytes - i * kStagingBytes);
  };
  for (size_t i = 0; status.ok() && i <= pieces; ++i) {
    if (i < pieces) {
      status = CudaError(
          cudaMemcpyAsync(out_.staging[i % 2].get(),
                          base() + offset + i * kStagingBytes, piece_bytes(i),
                          cudaMemcpyDeviceToHost, out_.stream),
          "cudaMemcpyAsync of a KV block to the host");
      if (status.ok()) {
        status = CudaError(cudaEventRecord(out_.done[i % 2], out_.stream),
                           "cudaEventRecord");
      }
    }
    if (status.ok() && i > 0) {
      const size_t prev = i - 1;
      status = CudaError(cudaEventSynchronize(out_.done[prev % 2]),
                         "copying a KV block to the host");
      if (status.ok()) {
        std::memcpy(static_cast<uint8_t*>(dst) + prev * kStagingBytes,
                    out_.staging[prev % 2].get(), piece_bytes(prev));
      }
    }
  }
  if (!status.ok()) cudaStreamSynchronize(out_.stream);
  return status;
}

absl::Status DeviceKvMemory::CopyIn(const void* src, size_t offset,
                                    size_t bytes) {
  if (offset > size() || bytes > size() - offset) {
    return absl::InvalidArgumentError("KV copy outside the device's pool");
  }
  absl::MutexLock lock(&in_.mu);
  absl::Status status = CudaError(cudaSetDevice(device_), "cudaSetDevice");
  const size_t pieces = (bytes + kStagingBytes - 1) / kStagingBytes;
  for (size_t i = 0; status.ok() && i < pieces; ++i) {
    const size_t n = std::min(kStagingBytes, bytes - i * kStagingBytes);
    // The staging buffer is free once its previous copy (two pieces ago)
    // is done.
    if (i >= 2) {
      status = CudaError(cudaEventSynchronize(in_.done[i % 2]),
                         "copying a KV block to the device");
      if (!status.ok()) break;
    }
    std::memcpy(in_.staging[i % 2].get(),
                static_cast<const uint8_t*>(src) + i * kStagingBytes, n);
    status = CudaError(cudaMemcpyAsync(base() + offset + i * kStagingBytes,
                                       in_.staging[i % 2].get(), n,
                                       cudaMemcpyHostToDevice, in_.stream),
                       "cudaMemcpyAsync of a KV block to the device");
    if (status.ok()) {
      status = CudaError(cudaEventRecord(in_.done[i % 2], in_.stream),
                         "cudaEventRecord");
    }
  }
  const absl::Status synced = CudaError(cudaStreamSynchronize(in_.stream),
                                        "copying a KV block to the device");
  return status.ok() ? synced : status;
}

}  // namespace longctx::cuda
