// Helpers shared by the GPU self-test programs (gpu_selftest.cu,
// model_kernels_selftest.cu): reporting, device arrays, error tracking and
// host-side element conversions. Each program includes it once, in its own
// translation unit; needs CUDA and the C++ standard library only.
#ifndef LONGCTX_KERNELS_CUDA_SELFTEST_UTIL_H_
#define LONGCTX_KERNELS_CUDA_SELFTEST_UTIL_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace longctx::kernels::cuda::selftest {

namespace kc = longctx::kernels::cuda;
using longctx::kernels::DType;

inline constexpr double kInf = std::numeric_limits<double>::infinity();
inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

inline int g_passed = 0;
inline int g_failed = 0;

inline void Report(const std::string& name, bool ok,
                   const std::string& detail) {
  std::printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name.c_str(),
              detail.c_str());
  std::fflush(stdout);
  (ok ? g_passed : g_failed)++;
}

// Reports a failed CUDA call of check `name` and returns from the check.
#define CHECK_CUDA(name, call)                                           \
  do {                                                                   \
    const cudaError_t e_ = (call);                                       \
    if (e_ != cudaSuccess) {                                             \
      Report(name, false,                                                \
             std::string(#call) + " failed: " + cudaGetErrorString(e_)); \
      return;                                                            \
    }                                                                    \
  } while (0)

// Launches, then waits for the device so that a fault in the kernel is
// reported by this check.
#define CHECK_LAUNCH(name, call)               \
  do {                                         \
    CHECK_CUDA(name, call);                    \
    CHECK_CUDA(name, cudaDeviceSynchronize()); \
  } while (0)

// DeviceArray owns n elements of device memory.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }

  cudaError_t Alloc(size_t n) {
    n_ = n;
    return cudaMalloc(reinterpret_cast<void**>(&ptr_),
                      std::max<size_t>(n, 1) * sizeof(T));
  }
  // Allocates v.size() elements and copies v in.
  cudaError_t Upload(const std::vector<T>& v) {
    cudaError_t e = Alloc(v.size());
    if (e != cudaSuccess || v.empty()) return e;
    return cudaMemcpy(ptr_, v.data(), v.size() * sizeof(T),
                      cudaMemcpyHostToDevice);
  }
  // Copies the whole array out into v (resized).
  cudaError_t Download(std::vector<T>* v) const {
    v->resize(n_);
    if (n_ == 0) return cudaSuccess;
    return cudaMemcpy(v->data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
  }
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// Worst tracks the largest error seen; NaN counts as infinitely bad.
struct Worst {
  double value = 0;
  void Add(double err) {
    if (!(err <= value)) value = std::isnan(err) ? kInf : err;
  }
};

inline std::string Format(const char* fmt, ...)
    __attribute__((format(printf, 1, 2)));
inline std::string Format(const char* fmt, ...) {
  char buffer[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buffer, sizeof(buffer), fmt, args);
  va_end(args);
  return buffer;
}

inline const char* DTypeLabel(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBf16:
      return "bf16";
  }
  return "?";
}

inline size_t ElementSize(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }

// Rounds v to `dtype` and returns the stored bits (in the low bytes of
// `bits`) and the exact fp32 value they hold.
inline float StoreAs(DType dtype, float v, uint32_t* bits) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(bits, &v, 4);
      return v;
    case DType::kF16: {
      const uint16_t h = longctx::kernels::F32ToF16(v);
      *bits = h;
      return longctx::kernels::F16ToF32(h);
    }
    case DType::kBf16: {
      const uint16_t b = longctx::kernels::F32ToBf16(v);
      *bits = b;
      return longctx::kernels::Bf16ToF32(b);
    }
  }
  return v;
}

inline void PutElement(DType dtype, uint8_t* base, size_t index,
                       uint32_t bits) {
  if (dtype == DType::kF32) {
    std::memcpy(base + index * 4, &bits, 4);
  } else {
    const uint16_t half = static_cast<uint16_t>(bits);
    std::memcpy(base + index * 2, &half, 2);
  }
}

// A NaN of `dtype`, to fill memory a kernel must not read.
inline uint32_t NaNBits(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 0x7fc00000u;
    case DType::kF16:
      return 0x7e00u;
    case DType::kBf16:
      return 0x7fc0u;
  }
  return 0;
}

}  // namespace longctx::kernels::cuda::selftest

#endif  // LONGCTX_KERNELS_CUDA_SELFTEST_UTIL_H_
