// GEMM for linear layers, through oneDNN matmul on the CPU.
//
//   y[m, n] = sum_k x[m, k] * w[n, k]  (+ bias[n])
//
// that is Y = X * W^T with W stored as a Hugging Face nn.Linear weight,
// row-major [N, K]. X and Y are fp32. W is converted once into a PackedWeight
// (fp32, or bf16 for ComputePrecision::kBf16, in oneDNN's preferred blocked
// layout). With kBf16, X is rounded to bf16 per call and products accumulate
// in fp32; oneDNN uses AMX or AVX512_BF16, whichever the CPU has.
//
// With WeightDtype::kInt8, W is quantized once to int8, symmetric per output
// row n (scale_n = max_k |w[n, k]| / 127), and each call quantizes every row
// of X the same way (scale_m = max_k |x[m, k]| / 127); the int8 products
// accumulate exactly in int32 and Y = scale_m * scale_n * sum (+ bias). Decode
// sizes (m <= kInt8GemvMaxRows) run this project's AVX512-VNNI kernel, larger
// ones (and all sizes on CPUs without AVX512-VNNI, or under
// SetMaxCpuIsa(kScalar)) oneDNN's int8 matmul; both read the same packed
// weight, 1 byte per element plus 8 per row.
//
// Example:
//   absl::StatusOr<PackedWeight> w = PackedWeight::Create(
//       data, DType::kBf16, /*n=*/out_features, /*k=*/in_features,
//       ComputePrecision::kBf16);
//   Gemm gemm;
//   absl::Status s = gemm.Run(x, m, /*x_stride=*/in_features, *w,
//                             /*bias=*/nullptr, y, /*y_stride=*/out_features);
#ifndef LONGCTX_KERNELS_GEMM_H_
#define LONGCTX_KERNELS_GEMM_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/dtype.h"

namespace longctx::kernels {

// ComputePrecision is the type GEMM inputs are multiplied in; accumulation
// and outputs are always fp32.
enum class ComputePrecision { kFp32, kBf16 };

// WeightDtype is how a PackedWeight stores the weight.
enum class WeightDtype {
  // In the compute precision (fp32 or bf16), converted from the source dtype.
  kAuto,
  // int8 with an fp32 scale per output row; the product runs in int8 whatever
  // the ComputePrecision (see the top of this file).
  kInt8,
};

// ParseWeightDtype accepts "auto" and "int8"; INVALID_ARGUMENT otherwise.
absl::StatusOr<WeightDtype> ParseWeightDtype(absl::string_view text);

// WeightDtypeName returns "auto" or "int8".
const char* WeightDtypeName(WeightDtype dtype);

// Gemm::Run multiplies int8 weights by at most this many rows of X with the
// project's VNNI kernel (memory bound: one pass over the weight); more rows
// go to oneDNN's int8 matmul.
inline constexpr int64_t kInt8GemvMaxRows = 4;

// ParseComputePrecision accepts "fp32" and "bf16"; INVALID_ARGUMENT otherwise.
absl::StatusOr<ComputePrecision> ParseComputePrecision(absl::string_view text);

// ComputePrecisionName returns "fp32" or "bf16".
const char* ComputePrecisionName(ComputePrecision precision);

// Bf16GemmSupported reports whether this CPU multiplies bf16 natively
// (AVX512_BF16 or AMX-BF16, as seen by oneDNN, which honors the environment
// variable ONEDNN_MAX_CPU_ISA).
bool Bf16GemmSupported();

// PackedWeight is a weight matrix prepared for Gemm::Run. Immutable after
// Create, so one PackedWeight may be used by any number of threads at once.
class PackedWeight {
 public:
  // Create packs w, row-major [n, k] of type `dtype` (rows contiguous, no
  // padding), for `precision`, or quantized to int8 when `weight_dtype` is
  // kInt8 (then `precision` is only recorded). Copies the data: w may be
  // freed afterwards. Needs transient memory of up to twice the packed size.
  // Thread-safe. INVALID_ARGUMENT for a null w, non-positive sizes or, for
  // kInt8, k > 65536 (the int32 sums could overflow), UNIMPLEMENTED for
  // kBf16 floats when !Bf16GemmSupported(), RESOURCE_EXHAUSTED when out of
  // memory, INTERNAL if oneDNN fails.
  static absl::StatusOr<PackedWeight> Create(
      const void* w, DType dtype, int64_t n, int64_t k,
      ComputePrecision precision,
      WeightDtype weight_dtype = WeightDtype::kAuto);

  PackedWeight(PackedWeight&& other) noexcept;
  PackedWeight& operator=(PackedWeight&& other) noexcept;
  ~PackedWeight();

  int64_t n() const;  // Output features.
  int64_t k() const;  // Input features.
  ComputePrecision precision() const;
  WeightDtype weight_dtype() const;
  // Bytes of packed data held (for kInt8 with the per-row scales and sums).
  size_t size_bytes() const;

 private:
  friend class Gemm;
  struct Rep;
  explicit PackedWeight(std::unique_ptr<Rep> rep);
  // Create for WeightDtype::kInt8, after the common checks.
  static absl::StatusOr<PackedWeight> CreateInt8(const void* w, DType dtype,
                                                 int64_t n, int64_t k,
                                                 ComputePrecision precision);
  std::unique_ptr<Rep> rep_;
};

// GemmOptions configures a Gemm.
struct GemmOptions {
  // Most oneDNN primitives kept; one exists per distinct (m, weight shape,
  // precision or int8, bias) seen. Beyond it the oldest is dropped and
  // created again when next needed. Default: 1024.
  size_t max_cached_primitives = 1024;
};

// Gemm runs matrix products and caches a oneDNN primitive per shape, so each
// shape pays primitive creation once. Thread-safe: Run may be called from
// several threads at once (each call runs on the calling thread's OpenMP
// team; see threads.h).
class Gemm {
 public:
  explicit Gemm(const GemmOptions& options = GemmOptions());
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // Run computes y[i, j] = sum_l x[i, l] * w[j, l] + bias[j] for i < m,
  // j < w.n(), l < w.k(). x is [m, w.k()] with row stride x_stride >= w.k()
  // elements; y is [m, w.n()] with row stride y_stride >= w.n(); bias is
  // [w.n()] or null for none. x and y must not overlap. m == 0 does nothing.
  // Padded rows (x_stride > w.k(), y_stride > w.n()) cost a copy of x or y:
  // oneDNN's fast kernels need dense operands.
  // The first call for a shape creates its primitive (JIT code generation);
  // later calls reuse it, and per-thread scratch that only grows. With an
  // int8 weight, x is quantized per row first (see the top of this file).
  // INVALID_ARGUMENT for bad sizes or strides, RESOURCE_EXHAUSTED if scratch
  // memory cannot be had, INTERNAL if oneDNN fails.
  absl::Status Run(const float* x, int64_t m, int64_t x_stride,
                   const PackedWeight& w, const float* bias, float* y,
                   int64_t y_stride);

  // Number of primitives currently cached.
  size_t num_cached_primitives() const;

 private:
  struct Cache;
  // Run for an int8 weight, after the common checks.
  absl::Status RunInt8(const float* x, int64_t m, int64_t x_stride,
                       const PackedWeight& w, const float* bias, float* y,
                       int64_t y_stride);
  std::unique_ptr<Cache> cache_;
};

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_GEMM_H_
