#include "kernels/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kernels/cpu/parallel.h"
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

// Per-thread scratch: dense copies of X (bf16, or fp32 rows with padding) and
// of Y (when Y has padding), and oneDNN's scratchpad. Kept across calls so
// that steady-state calls do not allocate.
struct ThreadScratch {
  AlignedBuffer src;
  AlignedBuffer dst;
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

bool Bf16GemmSupported() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 ||
         isa == dnnl::cpu_isa::avx512_core_amx;
}

// ---------------------------------------------------------------------------
// PackedWeight

struct PackedWeight::Rep {
  int64_t n = 0;
  int64_t k = 0;
  ComputePrecision precision = ComputePrecision::kFp32;
  memory::desc desc;  // Blocked layout of dims {k, n}.
  std::unique_ptr<uint8_t, decltype(&std::free)> data{nullptr, &std::free};
};

PackedWeight::PackedWeight(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
PackedWeight::PackedWeight(PackedWeight&& other) noexcept = default;
PackedWeight& PackedWeight::operator=(PackedWeight&& other) noexcept = default;
PackedWeight::~PackedWeight() = default;

int64_t PackedWeight::n() const { return rep_->n; }
int64_t PackedWeight::k() const { return rep_->k; }
ComputePrecision PackedWeight::precision() const { return rep_->precision; }
size_t PackedWeight::size_bytes() const { return rep_->desc.get_size(); }

absl::StatusOr<PackedWeight> PackedWeight::Create(const void* w, DType dtype,
                                                  int64_t n, int64_t k,
                                                  ComputePrecision precision) {
  if (w == nullptr || n <= 0 || k <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PackedWeight needs a weight and positive sizes; got n=", n, " k=", k,
        w == nullptr ? " and no data" : ""));
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
  try {
    dnnl::engine& engine = CpuEngine();
    const memory::desc src_md({kLayoutRows, k}, type, {k, 1});
    const memory::desc any_md({k, n}, type, memory::format_tag::any);
    const memory::desc dst_md({kLayoutRows, n}, memory::data_type::f32, {n, 1});
    const dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(src_md, any_md, dst_md), engine);
    rep->desc = pd.weights_desc();
    const size_t bytes = (rep->desc.get_size() + 63) / 64 * 64;
    rep->data.reset(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
    if (rep->data == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes to pack a weight"));
    }
    const memory::desc plain_md({k, n}, type, {1, k});
    memory plain_mem(plain_md, engine, const_cast<void*>(plain));
    memory packed_mem(rep->desc, engine, rep->data.get());
    dnnl::stream stream(engine);
    dnnl::reorder(plain_mem, packed_mem).execute(stream, plain_mem, packed_mem);
    stream.wait();
  } catch (const dnnl::error& e) {
    return DnnlError("packing a weight", e);
  }
  return PackedWeight(std::move(rep));
}

// ---------------------------------------------------------------------------
// Gemm

struct Gemm::Cache {
  // (m, n, k, precision, has_bias); operands are always dense.
  using Key = std::tuple<int64_t, int64_t, int64_t, int, bool>;
  struct Entry {
    dnnl::matmul primitive;
    size_t scratchpad_bytes = 0;
  };

  explicit Cache(size_t capacity) : capacity(capacity < 1 ? 1 : capacity) {}

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
  // oneDNN 2.6 runs matmul on its slow reference kernel unless source and
  // destination rows are dense, so padded operands go through dense copies.
  const bool bf16 = rep.precision == ComputePrecision::kBf16;
  const Cache::Key key(m, n, k, static_cast<int>(rep.precision),
                       bias != nullptr);
  const memory::data_type type = ComputeType(rep.precision);
  const memory::desc src_md({m, k}, type, {k, 1});
  const memory::desc dst_md({m, n}, memory::data_type::f32, {n, 1});
  const memory::desc bias_md({1, n}, memory::data_type::f32, {n, 1});

  try {
    std::shared_ptr<const Cache::Entry> entry;
    {
      absl::ReaderMutexLock lock(&cache_->mu);
      auto it = cache_->entries.find(key);
      if (it != cache_->entries.end()) entry = it->second;
    }
    if (entry == nullptr) {
      absl::MutexLock lock(&cache_->mu);
      auto it = cache_->entries.find(key);  // Another thread may have won.
      if (it != cache_->entries.end()) {
        entry = it->second;
      } else {
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        const dnnl::matmul::desc desc =
            bias != nullptr
                ? dnnl::matmul::desc(src_md, rep.desc, bias_md, dst_md)
                : dnnl::matmul::desc(src_md, rep.desc, dst_md);
        const dnnl::matmul::primitive_desc pd(desc, attr, CpuEngine());
        auto created = std::make_shared<Cache::Entry>();
        created->primitive = dnnl::matmul(pd);
        created->scratchpad_bytes = pd.scratchpad_desc().get_size();
        if (cache_->entries.size() >= cache_->capacity) {
          cache_->entries.erase(cache_->insertion_order.front());
          cache_->insertion_order.pop_front();
        }
        cache_->entries.emplace(key, created);
        cache_->insertion_order.push_back(key);
        entry = std::move(created);
      }
    }

    ThreadScratch& scratch = GetThreadScratch();
    const void* src = x;
    void* scratchpad = scratch.scratchpad.Ensure(entry->scratchpad_bytes);
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
    if (entry->scratchpad_bytes > 0 && scratchpad == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("Gemm::Run: no memory for ", entry->scratchpad_bytes,
                       " bytes of oneDNN scratchpad"));
    }
    dnnl::engine& engine = CpuEngine();
    memory src_mem(src_md, engine, const_cast<void*>(src));
    memory weights_mem(rep.desc, engine, rep.data.get());
    memory dst_mem(dst_md, engine, dst);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src_mem},
                                            {DNNL_ARG_WEIGHTS, weights_mem},
                                            {DNNL_ARG_DST, dst_mem}};
    if (entry->scratchpad_bytes > 0) {
      const memory::desc scratchpad_md(
          {static_cast<int64_t>(entry->scratchpad_bytes)},
          memory::data_type::u8, memory::format_tag::a);
      args.emplace(DNNL_ARG_SCRATCHPAD,
                   memory(scratchpad_md, engine, scratchpad));
    }
    if (bias != nullptr) {
      args.emplace(DNNL_ARG_BIAS,
                   memory(bias_md, engine, const_cast<float*>(bias)));
    }
    dnnl::stream& stream = ThreadStream();
    entry->primitive.execute(stream, args);
    stream.wait();
    if (dst != y) CopyRows(dst, n, m, n, y, y_stride);
  } catch (const dnnl::error& e) {
    return DnnlError("Gemm::Run", e);
  }
  return absl::OkStatus();
}

}  // namespace longctx::kernels
