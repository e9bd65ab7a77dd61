#include "kernels/gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu_isa.h"
#include "kernels/dtype.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace longctx::kernels {
namespace {

using dnnl::memory;

// The weights' blocked layout is taken from a primitive descriptor for this
// many rows. oneDNN's brgemm matmul picks the same layout for every row count
// (checked for the model shapes), so one packing serves all calls.
constexpr int64_t kLayoutRows = 256;

dnnl::engine& CpuEngine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

memory::data_type ComputeType(ComputePrecision precision) {
  return precision == ComputePrecision::kBf16 ? memory::data_type::bf16
                                              : memory::data_type::f32;
}

// AlignedBuffer is a growable, 64-byte aligned scratch buffer.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }

  // Ensure returns at least `bytes` bytes (earlier contents are lost), or
  // null if memory is exhausted.
  void* Ensure(size_t bytes) {
    if (bytes > size_) {
      std::free(data_);
      const size_t rounded = (bytes + 63) / 64 * 64;
      data_ = std::aligned_alloc(64, rounded);
      size_ = data_ != nullptr ? rounded : 0;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Per-thread scratch: dense copies of X (bf16, quantized u8, or fp32 rows
// with padding) and of Y (when Y has padding; int32 sums for int8), X's
// per-row int8 scales, and oneDNN's scratchpad. Kept across calls so that
// steady-state calls do not allocate.
struct ThreadScratch {
  AlignedBuffer src;
  AlignedBuffer dst;
  AlignedBuffer row_scales;
  AlignedBuffer scratchpad;
};

ThreadScratch& GetThreadScratch() {
  thread_local ThreadScratch scratch;
  return scratch;
}

dnnl::stream& ThreadStream() {
  thread_local dnnl::stream stream(CpuEngine());
  return stream;
}

// Converts rows of x (stride x_stride) to contiguous bf16 [m, k].
void RowsToBf16(const float* x, int64_t m, int64_t k, int64_t x_stride,
                uint16_t* out) {
  internal::ParallelFor(m, m * k, [&](int64_t i) {
    ConvertF32ToBf16(x + i * x_stride, out + i * k, k);
  });
}

// Copies m rows of `cols` floats between row strides.
void CopyRows(const float* from, int64_t from_stride, int64_t m, int64_t cols,
              float* to, int64_t to_stride) {
  internal::ParallelFor(m, m * cols, [&](int64_t i) {
    std::copy(from + i * from_stride, from + i * from_stride + cols,
              to + i * to_stride);
  });
}

absl::Status DnnlError(const char* what, const dnnl::error& e) {
  return absl::InternalError(
      absl::StrCat(what, ": oneDNN error ", e.status, ": ", e.what()));
}

// --- int8 ------------------------------------------------------------------
//
// Quantized X is stored unsigned, x_u8 = q + 128, because VNNI (vpdpbusd) and
// oneDNN's fast int8 kernels multiply u8 by s8. Then
//   sum_k x_u8 * w_q = sum_k q * w_q + 128 * sum_k w_q,
// and the second term, fixed per output row, is kept with the weight and
// subtracted after the product.
constexpr int32_t kActivationOffset = 128;
// |x_u8 * w_q| <= 255 * 127, so K up to 65536 cannot overflow the int32 sums.
constexpr int64_t kInt8MaxK = 65536;
// The VNNI kernel reads oneDNN's packed layout BA16a64b4a of W^T [k, n]: per
// 64 output rows, per 4 consecutive k, 64 x 4 bytes (row-major 64 rows of 4).
constexpr int64_t kGemvBlockRows = 64;

bool UseVnni() {
  static const bool has_vnni = __builtin_cpu_supports("avx512vnni");
  return has_vnni && ActiveCpuIsa() >= CpuIsa::kAvx512;
}

// Quantizes `values` symmetrically to [-127, 127]: returns the scale, writes
// round(v / scale) + offset. An all-zero row gets scale 0 and zeros.
template <typename T>
float QuantizeRowScalar(const float* values, int64_t k, int32_t offset,
                        T* out) {
  float amax = 0.0f;
  for (int64_t l = 0; l < k; ++l) amax = std::max(amax, std::fabs(values[l]));
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  for (int64_t l = 0; l < k; ++l) {
    const float q = std::min(127.0f, std::max(-127.0f, values[l] * inv));
    out[l] = static_cast<T>(static_cast<int32_t>(std::nearbyint(q)) + offset);
  }
  return amax / 127.0f;
}

// QuantizeRowScalar for X on AVX-512 (the same results: both round to
// nearest even).
__attribute__((target("avx512f,avx512bw"))) float QuantizeActivationAvx512(
    const float* values, int64_t k, uint8_t* out) {
  __m512 amax = _mm512_setzero_ps();
  int64_t l = 0;
  for (; l + 16 <= k; l += 16) {
    amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(values + l)));
  }
  const __mmask16 tail = static_cast<__mmask16>((1u << (k - l)) - 1);
  amax = _mm512_max_ps(amax,
                       _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, values + l)));
  const float max_abs = _mm512_reduce_max_ps(amax);
  const __m512 inv = _mm512_set1_ps(max_abs > 0.0f ? 127.0f / max_abs : 0.0f);
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  const __m512i offset = _mm512_set1_epi32(kActivationOffset);
  for (l = 0; l < k; l += 16) {
    const __mmask16 mask = k - l >= 16
                               ? static_cast<__mmask16>(0xffff)
                               : static_cast<__mmask16>((1u << (k - l)) - 1);
    const __m512 v =
        _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, values + l), inv);
    const __m512i q = _mm512_add_epi32(
        _mm512_cvtps_epi32(_mm512_min_ps(hi, _mm512_max_ps(lo, v))), offset);
    _mm512_mask_cvtusepi32_storeu_epi8(out + l, mask, q);
  }
  return max_abs / 127.0f;
}

// Quantizes m rows of x to u8 rows of `out_stride` bytes (the bytes from k on
// hold the offset, i.e. zero) and their scales.
void QuantizeActivations(const float* x, int64_t m, int64_t k, int64_t x_stride,
                         int64_t out_stride, uint8_t* out, float* scales) {
  const bool avx512 = ActiveCpuIsa() >= CpuIsa::kAvx512;
  internal::ParallelFor(m, m * k, [&](int64_t i) {
    uint8_t* row = out + i * out_stride;
    scales[i] =
        avx512 ? QuantizeActivationAvx512(x + i * x_stride, k, row)
               : QuantizeRowScalar(x + i * x_stride, k, kActivationOffset, row);
    std::memset(row + k, kActivationOffset, out_stride - k);
  });
}

// One 64-row block of W times M quantized rows of X, then
// y = (sum - offset) * x_scale * w_scale (+ bias) for the block's `cols`
// valid outputs. w: the block's packed bytes (k_padded / 4 groups of 256).
template <int M>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void Int8BlockVnni(
    const uint8_t* xq, int64_t xq_stride, int64_t k_padded, const int8_t* w,
    const float* x_scales, const float* w_scales, const int32_t* offsets,
    const float* bias, int64_t cols, float* y, int64_t y_stride) {
  __m512i acc[M][4];
  for (int i = 0; i < M; ++i) {
    for (int r = 0; r < 4; ++r) acc[i][r] = _mm512_setzero_si512();
  }
  for (int64_t g = 0; g < k_padded / 4; ++g) {
    const int8_t* wg = w + g * 256;
    const __m512i w0 = _mm512_load_si512(wg);
    const __m512i w1 = _mm512_load_si512(wg + 64);
    const __m512i w2 = _mm512_load_si512(wg + 128);
    const __m512i w3 = _mm512_load_si512(wg + 192);
    for (int i = 0; i < M; ++i) {
      int32_t four;  // x[4g .. 4g + 3], as the 4 bytes every lane multiplies.
      std::memcpy(&four, xq + i * xq_stride + g * 4, sizeof(four));
      const __m512i xb = _mm512_set1_epi32(four);
      acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], xb, w0);
      acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], xb, w1);
      acc[i][2] = _mm512_dpbusd_epi32(acc[i][2], xb, w2);
      acc[i][3] = _mm512_dpbusd_epi32(acc[i][3], xb, w3);
    }
  }
  for (int r = 0; r < 4 && r * 16 < cols; ++r) {
    const int64_t valid = std::min<int64_t>(16, cols - r * 16);
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
    const __m512i offset = _mm512_maskz_loadu_epi32(mask, offsets + r * 16);
    const __m512 scale = _mm512_maskz_loadu_ps(mask, w_scales + r * 16);
    const __m512 b = bias != nullptr
                         ? _mm512_maskz_loadu_ps(mask, bias + r * 16)
                         : _mm512_setzero_ps();
    for (int i = 0; i < M; ++i) {
      const __m512 sum =
          _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][r], offset));
      const __m512 out = _mm512_fmadd_ps(
          sum, _mm512_mul_ps(scale, _mm512_set1_ps(x_scales[i])), b);
      _mm512_mask_storeu_ps(y + i * y_stride + r * 16, mask, out);
    }
  }
}

// The batch of at most kInt8GemvMaxRows rows of quantized X times a weight
// in the GEMV layout, spread over the OpenMP team by 64-row blocks.
void Int8GemvVnni(const uint8_t* xq, int64_t m, int64_t k_padded,
                  const int8_t* w, int64_t block_bytes, int64_t n,
                  const float* x_scales, const float* w_scales,
                  const int32_t* offsets, const float* bias, float* y,
                  int64_t y_stride) {
  const int64_t blocks = (n + kGemvBlockRows - 1) / kGemvBlockRows;
  internal::ParallelFor(blocks, m * n * k_padded, [&](int64_t b) {
    const int64_t col = b * kGemvBlockRows;
    const int64_t cols = std::min(kGemvBlockRows, n - col);
    const int8_t* wb = w + b * block_bytes;
    const float* bb = bias != nullptr ? bias + col : nullptr;
    for (int64_t i = 0; i < m; i += 4) {
      auto run = [&](auto rows) {
        Int8BlockVnni<decltype(rows)::value>(
            xq + i * k_padded, k_padded, k_padded, wb, x_scales + i,
            w_scales + col, offsets + col, bb, cols, y + i * y_stride + col,
            y_stride);
      };
      switch (std::min<int64_t>(4, m - i)) {
        case 1:
          run(std::integral_constant<int, 1>());
          break;
        case 2:
          run(std::integral_constant<int, 2>());
          break;
        case 3:
          run(std::integral_constant<int, 3>());
          break;
        default:
          run(std::integral_constant<int, 4>());
          break;
      }
    }
  });
}

// y = (acc - offset) * x_scale * w_scale (+ bias) for int32 sums acc [m, n].
void Int8Epilogue(const int32_t* acc, int64_t m, int64_t n,
                  const float* x_scales, const float* w_scales,
                  const int32_t* offsets, const float* bias, float* y,
                  int64_t y_stride) {
  internal::ParallelFor(m, m * n, [&](int64_t i) {
    const int32_t* a = acc + i * n;
    float* out = y + i * y_stride;
    const float x_scale = x_scales[i];
    for (int64_t j = 0; j < n; ++j) {
      out[j] = static_cast<float>(a[j] - offsets[j]) * (x_scale * w_scales[j]);
    }
    if (bias != nullptr) {
      for (int64_t j = 0; j < n; ++j) out[j] += bias[j];
    }
  });
}

}  // namespace

absl::StatusOr<ComputePrecision> ParseComputePrecision(absl::string_view text) {
  if (text == "fp32") return ComputePrecision::kFp32;
  if (text == "bf16") return ComputePrecision::kBf16;
  return absl::InvalidArgumentError(absl::StrCat(
      "compute precision \"", text, "\" is not one of fp32, bf16"));
}

const char* ComputePrecisionName(ComputePrecision precision) {
  return precision == ComputePrecision::kBf16 ? "bf16" : "fp32";
}

absl::StatusOr<WeightDtype> ParseWeightDtype(absl::string_view text) {
  if (text == "auto") return WeightDtype::kAuto;
  if (text == "int8") return WeightDtype::kInt8;
  return absl::InvalidArgumentError(
      absl::StrCat("weight dtype \"", text, "\" is not one of auto, int8"));
}

const char* WeightDtypeName(WeightDtype dtype) {
  return dtype == WeightDtype::kInt8 ? "int8" : "auto";
}

bool Bf16GemmSupported() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 ||
         isa == dnnl::cpu_isa::avx512_core_amx;
}

// ---------------------------------------------------------------------------
// PackedWeight

namespace {

// PackIntoLayout reorders `plain`, W row-major [n, k] of type `wei`, into
// the layout oneDNN prefers for the weights of a matmul `src` x W^T -> `dst`
// (asked for with kLayoutRows rows of X), in new 64-byte aligned memory,
// zero-filled first when `zero_fill`. RESOURCE_EXHAUSTED without memory,
// INTERNAL if oneDNN fails.
absl::Status PackIntoLayout(
    const void* plain, int64_t n, int64_t k, memory::data_type src,
    memory::data_type wei, memory::data_type dst, bool zero_fill,
    memory::desc* desc, std::unique_ptr<uint8_t, decltype(&std::free)>* data) {
  try {
    dnnl::engine& engine = CpuEngine();
    const memory::desc src_md({kLayoutRows, k}, src, {k, 1});
    const memory::desc any_md({k, n}, wei, memory::format_tag::any);
    const memory::desc dst_md({kLayoutRows, n}, dst, {n, 1});
    const dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(src_md, any_md, dst_md), engine);
    *desc = pd.weights_desc();
    const size_t bytes = (desc->get_size() + 63) / 64 * 64;
    data->reset(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
    if (*data == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes to pack a weight"));
    }
    if (zero_fill) std::memset(data->get(), 0, bytes);
    const memory::desc plain_md({k, n}, wei, {1, k});
    memory plain_mem(plain_md, engine, const_cast<void*>(plain));
    memory packed_mem(*desc, engine, data->get());
    dnnl::stream stream(engine);
    dnnl::reorder(plain_mem, packed_mem).execute(stream, plain_mem, packed_mem);
    stream.wait();
  } catch (const dnnl::error& e) {
    return DnnlError("packing a weight", e);
  }
  return absl::OkStatus();
}

}  // namespace

struct PackedWeight::Rep {
  int64_t n = 0;
  int64_t k = 0;
  ComputePrecision precision = ComputePrecision::kFp32;
  WeightDtype weight_dtype = WeightDtype::kAuto;
  memory::desc desc;  // Blocked layout of dims {k, n}.
  std::unique_ptr<uint8_t, decltype(&std::free)> data{nullptr, &std::free};
  // kInt8: per output row, the scale and kActivationOffset * sum_k w_q.
  std::vector<float> scales;
  std::vector<int32_t> offsets;
  // kInt8: whether `desc` is the layout the VNNI kernel reads, with k padded
  // to `padded_k` and `block_bytes` bytes per 64 output rows.
  bool gemv_layout = false;
  int64_t padded_k = 0;
  int64_t block_bytes = 0;
};

PackedWeight::PackedWeight(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
PackedWeight::PackedWeight(PackedWeight&& other) noexcept = default;
PackedWeight& PackedWeight::operator=(PackedWeight&& other) noexcept = default;
PackedWeight::~PackedWeight() = default;

int64_t PackedWeight::n() const { return rep_->n; }
int64_t PackedWeight::k() const { return rep_->k; }
ComputePrecision PackedWeight::precision() const { return rep_->precision; }
WeightDtype PackedWeight::weight_dtype() const { return rep_->weight_dtype; }
size_t PackedWeight::size_bytes() const {
  return rep_->desc.get_size() + rep_->scales.size() * sizeof(float) +
         rep_->offsets.size() * sizeof(int32_t);
}

namespace {

// Quantizes w, row-major [n, k] of `dtype`, to int8 per row: `out` [n, k],
// each row's scale and kActivationOffset * its sum.
void QuantizeWeight(const void* w, DType dtype, int64_t n, int64_t k,
                    int8_t* out, std::vector<float>& scales,
                    std::vector<int32_t>& offsets) {
  scales.assign(static_cast<size_t>(n), 0.0f);
  offsets.assign(static_cast<size_t>(n), 0);
  internal::ParallelFor(n, n * k, [&](int64_t row) {
    thread_local std::vector<float> values;
    values.resize(static_cast<size_t>(k));
    ConvertToF32(dtype,
                 static_cast<const uint8_t*>(w) +
                     static_cast<size_t>(row * k) * DTypeSize(dtype),
                 values.data(), k);
    int8_t* q = out + row * k;
    scales[row] = QuantizeRowScalar(values.data(), k, 0, q);
    int32_t sum = 0;
    for (int64_t l = 0; l < k; ++l) sum += q[l];
    offsets[row] = kActivationOffset * sum;
  });
}

// Whether `desc`, the packed W^T [k, n], is BA16a64b4a over k padded to 64
// (the layout Int8BlockVnni reads), with 64 output rows every `block_bytes`.
bool IsGemvLayout(const memory::desc& desc, int64_t k, int64_t* padded_k,
                  int64_t* block_bytes) {
  const dnnl_memory_desc_t& md = desc.data;
  if (md.format_kind != dnnl_blocked || md.extra.flags != 0) return false;
  const dnnl_blocking_desc_t& b = md.format_desc.blocking;
  *padded_k = (k + 63) / 64 * 64;
  *block_bytes = *padded_k * kGemvBlockRows;
  return md.ndims == 2 && md.data_type == dnnl_s8 && b.inner_nblks == 3 &&
         b.inner_blks[0] == 16 && b.inner_idxs[0] == 0 &&
         b.inner_blks[1] == 64 && b.inner_idxs[1] == 1 &&
         b.inner_blks[2] == 4 && b.inner_idxs[2] == 0 &&
         md.padded_dims[0] == *padded_k && b.strides[0] == 64 * 64 &&
         b.strides[1] == *block_bytes;
}

}  // namespace

absl::StatusOr<PackedWeight> PackedWeight::Create(const void* w, DType dtype,
                                                  int64_t n, int64_t k,
                                                  ComputePrecision precision,
                                                  WeightDtype weight_dtype) {
  if (w == nullptr || n <= 0 || k <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PackedWeight needs a weight and positive sizes; got n=", n, " k=", k,
        w == nullptr ? " and no data" : ""));
  }
  if (weight_dtype == WeightDtype::kInt8) {
    return CreateInt8(w, dtype, n, k, precision);
  }
  if (precision == ComputePrecision::kBf16 && !Bf16GemmSupported()) {
    return absl::UnimplementedError(
        "bf16 compute needs a CPU with AVX512_BF16 or AMX-BF16; use fp32");
  }
  const memory::data_type type = ComputeType(precision);
  const int64_t count = n * k;

  // The source in the compute type, as dims {k, n} with strides {1, k}: the
  // transpose of the row-major [n, k] matrix, without moving data.
  const void* plain = w;
  std::unique_ptr<uint8_t, decltype(&std::free)> converted(nullptr, &std::free);
  const bool needs_conversion =
      !(dtype == DType::kF32 && precision == ComputePrecision::kFp32) &&
      !(dtype == DType::kBf16 && precision == ComputePrecision::kBf16);
  if (needs_conversion) {
    const size_t element = precision == ComputePrecision::kBf16 ? 2 : 4;
    const size_t bytes = (static_cast<size_t>(count) * element + 63) / 64 * 64;
    converted.reset(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
    if (converted == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes to pack a weight"));
    }
    // Row by row, F16 to bf16 through fp32 in pieces that stay in L1.
    uint8_t* out = converted.get();
    internal::ParallelFor(n, count, [&](int64_t row) {
      const uint8_t* src = static_cast<const uint8_t*>(w) +
                           static_cast<size_t>(row * k) * DTypeSize(dtype);
      if (precision == ComputePrecision::kFp32) {
        ConvertToF32(dtype, src, reinterpret_cast<float*>(out) + row * k, k);
        return;
      }
      uint16_t* dst = reinterpret_cast<uint16_t*>(out) + row * k;
      float piece[1024];
      for (int64_t i = 0; i < k; i += 1024) {
        const int64_t len = k - i < 1024 ? k - i : 1024;
        ConvertToF32(dtype, src + static_cast<size_t>(i) * DTypeSize(dtype),
                     piece, len);
        ConvertF32ToBf16(piece, dst + i, len);
      }
    });
    plain = converted.get();
  }

  auto rep = std::make_unique<Rep>();
  rep->n = n;
  rep->k = k;
  rep->precision = precision;
  absl::Status status =
      PackIntoLayout(plain, n, k, type, type, memory::data_type::f32,
                     /*zero_fill=*/false, &rep->desc, &rep->data);
  if (!status.ok()) return status;
  return PackedWeight(std::move(rep));
}

absl::StatusOr<PackedWeight> PackedWeight::CreateInt8(
    const void* w, DType dtype, int64_t n, int64_t k,
    ComputePrecision precision) {
  if (k > kInt8MaxK) {
    return absl::InvalidArgumentError(
        absl::StrCat("int8 weights need k <= ", kInt8MaxK, "; got k=", k));
  }
  const size_t count = static_cast<size_t>(n * k);
  std::unique_ptr<int8_t, decltype(&std::free)> plain(
      static_cast<int8_t*>(std::aligned_alloc(64, (count + 63) / 64 * 64)),
      &std::free);
  if (plain == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", count, " bytes to quantize a weight"));
  }
  auto rep = std::make_unique<Rep>();
  rep->n = n;
  rep->k = k;
  rep->precision = precision;
  rep->weight_dtype = WeightDtype::kInt8;
  QuantizeWeight(w, dtype, n, k, plain.get(), rep->scales, rep->offsets);
  // The layout oneDNN's int8 matmul wants (u8 X, int32 sums), which is the
  // VNNI kernel's on CPUs with VNNI; padding multiplies as zero.
  absl::Status status = PackIntoLayout(
      plain.get(), n, k, memory::data_type::u8, memory::data_type::s8,
      memory::data_type::s32, /*zero_fill=*/true, &rep->desc, &rep->data);
  if (!status.ok()) return status;
  rep->gemv_layout =
      IsGemvLayout(rep->desc, k, &rep->padded_k, &rep->block_bytes);
  return PackedWeight(std::move(rep));
}

// ---------------------------------------------------------------------------
// Gemm

struct Gemm::Cache {
  // (m, n, k, precision, weight dtype, has_bias); operands are always dense.
  using Key = std::tuple<int64_t, int64_t, int64_t, int, int, bool>;
  struct Entry {
    dnnl::matmul primitive;
    size_t scratchpad_bytes = 0;
  };

  explicit Cache(size_t capacity) : capacity(capacity < 1 ? 1 : capacity) {}

  // Get returns the primitive of `key`, made from `desc` if not cached.
  // Throws dnnl::error.
  std::shared_ptr<const Entry> Get(const Key& key,
                                   const dnnl::matmul::desc& desc) {
    {
      absl::ReaderMutexLock lock(&mu);
      auto it = entries.find(key);
      if (it != entries.end()) return it->second;
    }
    absl::MutexLock lock(&mu);
    auto it = entries.find(key);  // Another thread may have won.
    if (it != entries.end()) return it->second;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::matmul::primitive_desc pd(desc, attr, CpuEngine());
    auto created = std::make_shared<Entry>();
    created->primitive = dnnl::matmul(pd);
    created->scratchpad_bytes = pd.scratchpad_desc().get_size();
    if (entries.size() >= capacity) {
      entries.erase(insertion_order.front());
      insertion_order.pop_front();
    }
    entries.emplace(key, created);
    insertion_order.push_back(key);
    return created;
  }

  const size_t capacity;
  mutable absl::Mutex mu;
  std::map<Key, std::shared_ptr<const Entry>> entries ABSL_GUARDED_BY(mu);
  std::deque<Key> insertion_order ABSL_GUARDED_BY(mu);
};

Gemm::Gemm(const GemmOptions& options)
    : cache_(std::make_unique<Cache>(options.max_cached_primitives)) {}

Gemm::~Gemm() = default;

size_t Gemm::num_cached_primitives() const {
  absl::ReaderMutexLock lock(&cache_->mu);
  return cache_->entries.size();
}

namespace {

// Runs a cached primitive on dense operands, with per-thread scratchpad.
absl::Status Execute(const dnnl::matmul& primitive, size_t scratchpad_bytes,
                     const memory::desc& src_md, const void* src,
                     const memory::desc& weights_md, const void* weights,
                     const memory::desc& dst_md, void* dst,
                     const memory::desc& bias_md, const float* bias) {
  void* scratchpad = GetThreadScratch().scratchpad.Ensure(scratchpad_bytes);
  if (scratchpad_bytes > 0 && scratchpad == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("Gemm::Run: no memory for ", scratchpad_bytes,
                     " bytes of oneDNN scratchpad"));
  }
  dnnl::engine& engine = CpuEngine();
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, memory(src_md, engine, const_cast<void*>(src))},
      {DNNL_ARG_WEIGHTS,
       memory(weights_md, engine, const_cast<void*>(weights))},
      {DNNL_ARG_DST, memory(dst_md, engine, dst)}};
  if (scratchpad_bytes > 0) {
    const memory::desc scratchpad_md({static_cast<int64_t>(scratchpad_bytes)},
                                     memory::data_type::u8,
                                     memory::format_tag::a);
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 memory(scratchpad_md, engine, scratchpad));
  }
  if (bias != nullptr) {
    args.emplace(DNNL_ARG_BIAS,
                 memory(bias_md, engine, const_cast<float*>(bias)));
  }
  dnnl::stream& stream = ThreadStream();
  primitive.execute(stream, args);
  stream.wait();
  return absl::OkStatus();
}

}  // namespace

absl::Status Gemm::Run(const float* x, int64_t m, int64_t x_stride,
                       const PackedWeight& w, const float* bias, float* y,
                       int64_t y_stride) {
  const PackedWeight::Rep& rep = *w.rep_;
  const int64_t n = rep.n;
  const int64_t k = rep.k;
  if (m < 0 || x_stride < k || y_stride < n) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemm::Run: m=", m, " x_stride=", x_stride, " (k=", k,
                     ") y_stride=", y_stride, " (n=", n, ")"));
  }
  if (m == 0) return absl::OkStatus();
  if (x == nullptr || y == nullptr) {
    return absl::InvalidArgumentError("Gemm::Run: null x or y");
  }
  if (rep.weight_dtype == WeightDtype::kInt8) {
    return RunInt8(x, m, x_stride, w, bias, y, y_stride);
  }
  // oneDNN 2.6 runs matmul on its slow reference kernel unless source and
  // destination rows are dense, so padded operands go through dense copies.
  const bool bf16 = rep.precision == ComputePrecision::kBf16;
  const Cache::Key key(m, n, k, static_cast<int>(rep.precision),
                       static_cast<int>(WeightDtype::kAuto), bias != nullptr);
  const memory::data_type type = ComputeType(rep.precision);
  const memory::desc src_md({m, k}, type, {k, 1});
  const memory::desc dst_md({m, n}, memory::data_type::f32, {n, 1});
  const memory::desc bias_md({1, n}, memory::data_type::f32, {n, 1});

  try {
    const std::shared_ptr<const Cache::Entry> entry = cache_->Get(
        key, bias != nullptr
                 ? dnnl::matmul::desc(src_md, rep.desc, bias_md, dst_md)
                 : dnnl::matmul::desc(src_md, rep.desc, dst_md));
    ThreadScratch& scratch = GetThreadScratch();
    const void* src = x;
    if (bf16) {
      uint16_t* converted = static_cast<uint16_t*>(
          scratch.src.Ensure(static_cast<size_t>(m * k) * sizeof(uint16_t)));
      if (converted == nullptr) {
        return absl::ResourceExhaustedError(
            absl::StrCat("Gemm::Run: no memory for a bf16 copy of x (m=", m,
                         ", k=", k, ")"));
      }
      RowsToBf16(x, m, k, x_stride, converted);
      src = converted;
    } else if (x_stride != k) {
      float* dense = static_cast<float*>(
          scratch.src.Ensure(static_cast<size_t>(m * k) * sizeof(float)));
      if (dense == nullptr) {
        return absl::ResourceExhaustedError(
            absl::StrCat("Gemm::Run: no memory for a dense copy of x (m=", m,
                         ", k=", k, ")"));
      }
      CopyRows(x, x_stride, m, k, dense, k);
      src = dense;
    }
    float* dst = y;
    if (y_stride != n) {
      dst = static_cast<float*>(
          scratch.dst.Ensure(static_cast<size_t>(m * n) * sizeof(float)));
      if (dst == nullptr) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "Gemm::Run: no memory for a dense y (m=", m, ", n=", n, ")"));
      }
    }
    absl::Status status =
        Execute(entry->primitive, entry->scratchpad_bytes, src_md, src,
                rep.desc, rep.data.get(), dst_md, dst, bias_md, bias);
    if (!status.ok()) return status;
    if (dst != y) CopyRows(dst, n, m, n, y, y_stride);
  } catch (const dnnl::error& e) {
    return DnnlError("Gemm::Run", e);
  }
  return absl::OkStatus();
}

absl::Status Gemm::RunInt8(const float* x, int64_t m, int64_t x_stride,
                           const PackedWeight& w, const float* bias, float* y,
                           int64_t y_stride) {
  const PackedWeight::Rep& rep = *w.rep_;
  const int64_t n = rep.n;
  const int64_t k = rep.k;
  ThreadScratch& scratch = GetThreadScratch();
  // Decode sizes: one pass over the weight in the VNNI kernel, which reads X
  // padded to the packed k (oneDNN wants dense rows).
  const bool gemv = m <= kInt8GemvMaxRows && rep.gemv_layout && UseVnni();
  const int64_t xq_stride = gemv ? rep.padded_k : k;
  uint8_t* xq = static_cast<uint8_t*>(
      scratch.src.Ensure(static_cast<size_t>(m * xq_stride)));
  float* x_scales = static_cast<float*>(
      scratch.row_scales.Ensure(static_cast<size_t>(m) * sizeof(float)));
  if (xq == nullptr || x_scales == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Gemm::Run: no memory for an int8 copy of x (m=", m, ", k=", k, ")"));
  }
  QuantizeActivations(x, m, k, x_stride, xq_stride, xq, x_scales);
  if (gemv) {
    Int8GemvVnni(xq, m, rep.padded_k,
                 reinterpret_cast<const int8_t*>(rep.data.get()),
                 rep.block_bytes, n, x_scales, rep.scales.data(),
                 rep.offsets.data(), bias, y, y_stride);
    return absl::OkStatus();
  }
  int32_t* sums = static_cast<int32_t*>(
      scratch.dst.Ensure(static_cast<size_t>(m * n) * sizeof(int32_t)));
  if (sums == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Gemm::Run: no memory for int32 sums (m=", m, ", n=", n, ")"));
  }
  const Cache::Key key(m, n, k, static_cast<int>(rep.precision),
                       static_cast<int>(WeightDtype::kInt8), false);
  const memory::desc src_md({m, k}, memory::data_type::u8, {k, 1});
  const memory::desc dst_md({m, n}, memory::data_type::s32, {n, 1});
  try {
    const std::shared_ptr<const Cache::Entry> entry =
        cache_->Get(key, dnnl::matmul::desc(src_md, rep.desc, dst_md));
    absl::Status status =
        Execute(entry->primitive, entry->scratchpad_bytes, src_md, xq, rep.desc,
                rep.data.get(), dst_md, sums, memory::desc(), nullptr);
    if (!status.ok()) return status;
  } catch (const dnnl::error& e) {
    return DnnlError("Gemm::Run (int8)", e);
  }
  Int8Epilogue(sums, m, n, x_scales, rep.scales.data(), rep.offsets.data(),
               bias, y, y_stride);
  return absl::OkStatus();
}

}  // namespace longctx::kernels
