#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cpu_isa.h"
#include "kernels/dtype.h"
#include "kernels/lse_merge.h"
#include "kernels/threads.h"

namespace longctx::kernels {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// PagedCache owns the blocks of a PagedKv view, allocated in a shuffled order
// so that consecutive blocks are not adjacent in memory.
class PagedCache {
 public:
  PagedCache(DType dtype, int num_kv_heads, int head_dim, int block_size,
             int64_t num_tokens, int64_t start_pos, uint32_t seed)
      : dtype_(dtype),
        heads_(num_kv_heads),
        d_(head_dim),
        block_size_(block_size) {
    const int64_t blocks = (num_tokens + block_size - 1) / block_size;
    const size_t block_elems =
        static_cast<size_t>(num_kv_heads) * block_size * head_dim;
    pool_.resize(2 * (blocks + 1) * block_elems * DTypeSize(dtype));
    std::vector<int64_t> order(2 * blocks);
    std::iota(order.begin(), order.end(), 1);
    std::mt19937 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    const size_t block_bytes = block_elems * DTypeSize(dtype);
    std::vector<float> values(block_elems);
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* k = pool_.data() + order[2 * b] * block_bytes;
      uint8_t* v = pool_.data() + order[2 * b + 1] * block_bytes;
      for (float& f : values) f = dist(rng);
      ConvertFromF32(values.data(), dtype, k, block_elems);
      for (float& f : values) f = dist(rng);
      ConvertFromF32(values.data(), dtype, v, block_elems);
      k_.push_back(k);
      v_.push_back(v);
    }
    view_.k_blocks = k_.data();
    view_.v_blocks = v_.data();
    view_.dtype = dtype;
    view_.block_size = block_size;
    view_.num_kv_heads = num_kv_heads;
    view_.head_dim = head_dim;
    view_.num_tokens = num_tokens;
    view_.start_pos = start_pos;
  }

  const PagedKv& view() const { return view_; }

  double K(int64_t t, int h, int x) const { return Value(k_, t, h, x); }
  double V(int64_t t, int h, int x) const { return Value(v_, t, h, x); }

 private:
  double Value(const std::vector<const void*>& blocks, int64_t t, int h,
               int x) const {
    const size_t index =
        (static_cast<size_t>(h) * block_size_ + t % block_size_) * d_ + x;
    const void* block = blocks[t / block_size_];
    switch (dtype_) {
      case DType::kF32:
        return static_cast<const float*>(block)[index];
      case DType::kF16:
        return F16ToF32(static_cast<const uint16_t*>(block)[index]);
      case DType::kBf16:
        return Bf16ToF32(static_cast<const uint16_t*>(block)[index]);
    }
    return 0;
  }

  DType dtype_;
  int heads_, d_, block_size_;
  std::vector<uint8_t> pool_;
  std::vector<const void*> k_, v_;
  PagedKv view_;
};

struct Case {
  std::string name;
  int num_heads, num_kv_heads, head_dim, block_size;
  int64_t n_q, q_pos0, n_kv, kv_pos0;
  bool causal = true;
  DType dtype = DType::kF16;
  float scale = 0.0f;
  int64_t stride_pad = 0;    // Extra floats between query tokens.
  float q_magnitude = 3.0f;  // Larger values make the softmax peakier.
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

struct Result {
  std::vector<float> o, lse;
};

std::vector<float> RandomQ(const Case& c, int64_t stride, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-c.q_magnitude, c.q_magnitude);
  std::vector<float> q(c.n_q * stride);
  for (float& f : q) f = dist(rng);
  return q;
}

// Double-precision attention straight from the definition.
Result Reference(const Case& c, const PagedCache& cache,
                 const std::vector<float>& q, int64_t stride) {
  const int d = c.head_dim;
  const int group = c.num_heads / c.num_kv_heads;
  const double scale = c.scale != 0 ? c.scale : 1.0 / std::sqrt(double(d));
  Result r;
  r.o.assign(c.n_q * stride, 0.0f);
  r.lse.assign(c.n_q * c.num_heads, 0.0f);
  std::vector<double> s(c.n_kv), acc(d);
  for (int64_t i = 0; i < c.n_q; ++i) {
    for (int h = 0; h < c.num_heads; ++h) {
      const int kvh = h / group;
      double max = kNegInf;
      for (int64_t j = 0; j < c.n_kv; ++j) {
        const bool visible = !c.causal || c.kv_pos0 + j <= c.q_pos0 + i;
        double dot = 0;
        for (int x = 0; visible && x < d; ++x) {
          dot += double(q[i * stride + h * d + x]) * cache.K(j, kvh, x);
        }
        s[j] = visible ? dot * scale : kNegInf;
        max = std::max(max, s[j]);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      if (max != kNegInf) {
        for (int64_t j = 0; j < c.n_kv; ++j) {
          if (s[j] == kNegInf) continue;
          const double p = std::exp(s[j] - max);
          sum += p;
          for (int x = 0; x < d; ++x) acc[x] += p * cache.V(j, kvh, x);
        }
      }
      for (int x = 0; x < d; ++x) {
        r.o[i * stride + h * d + x] = sum > 0 ? float(acc[x] / sum) : 0.0f;
      }
      r.lse[i * c.num_heads + h] =
          sum > 0 ? float(max + std::log(sum)) : -INFINITY;
    }
  }
  return r;
}

Result RunKernel(const Case& c, const PagedCache& cache,
                 const std::vector<float>& q, int64_t stride,
                 DType compute = DType::kF32) {
  Result r;
  r.o.assign(c.n_q * stride, 1234.5f);  // Catches unwritten outputs.
  r.lse.assign(c.n_q * c.num_heads, 1234.5f);
  AttentionParams params;
  params.num_heads = c.num_heads;
  params.q_start_pos = c.q_pos0;
  params.causal = c.causal;
  params.scale = c.scale;
  params.compute = compute;
  const absl::Status status =
      FlashAttention(q.data(), c.n_q, stride, cache.view(), params, r.o.data(),
                     stride, r.lse.data());
  EXPECT_TRUE(status.ok()) << status;
  return r;
}

// Tolerance, absolute, on o and lse. The kernel works in fp32: q * scale is
// rounded, scores are fp32 dot products over head_dim <= 256 terms, and exp2
// is a polynomial with 3e-7 relative error. Scores here stay below ~20 in
// magnitude, so each is off by under ~5e-6; o is a convex combination of
// values in [-1, 1] and lse a log of a sum, so both inherit that absolute
// error (observed: about 1 ulp, under 1e-6). Any masking or indexing mistake
// moves results by 1e-3 or more.
constexpr double kTolerance = 1e-5;

// Tolerance of compute kBf16, absolute, on o and lse. q, k, v and the
// softmax weights p are rounded to bf16 (relative error <= 2^-9 each; sums
// stay fp32). A score s = scale * sum_x q_x k_x then errs by up to
// 2^-8 * scale * sum_x |q_x k_x|: here (|q| <= 3, |k| <= 1, scale =
// 1/sqrt(d)) about 2^-8 * 0.75 * sqrt(d) <= 0.05 at d = 256 in the worst
// case, and as a random sum of d rounding errors typically 1/sqrt(d) of that.
// o, a weighted mean of values in [-1, 1], moves by about the score error
// plus 2^-8 (p and v); lse by the score error. The bound grows with |q| and
// with the scale: the tolerance is kBf16Tolerance * max(1, q_magnitude / 3)
// * max(1, scale * sqrt(d)). Observed: 0.027 on PeakySoftmax (|q| <= 12,
// scores to ~±40; tolerance 0.08), 0.014 on ExplicitScaleAndStride (scale
// 0.3 = 2.4 / sqrt(d); tolerance 0.048), under 0.01 elsewhere. A masking or
// pairing mistake (a key of the wrong tile, an odd key or column dropped)
// moves results by 5e-2 or more at |q| <= 3.
constexpr double kBf16Tolerance = 2e-2;

double Bf16Tolerance(const Case& c) {
  const double scale_ratio =
      c.scale != 0 ? c.scale * std::sqrt(double(c.head_dim)) : 1.0;
  return kBf16Tolerance * std::max(1.0, c.q_magnitude / 3.0) *
         std::max(1.0, scale_ratio);
}

void ExpectClose(const Case& c, const Result& got, const Result& want,
                 int64_t stride, double tolerance = kTolerance) {
  int bad = 0;
  for (int64_t i = 0; i < c.n_q; ++i) {
    for (int h = 0; h < c.num_heads; ++h) {
      const float gl = got.lse[i * c.num_heads + h];
      const float wl = want.lse[i * c.num_heads + h];
      if (std::isinf(wl)) {
        if (!(std::isinf(gl) && gl < 0) && ++bad < 5) {
          ADD_FAILURE() << "lse[" << i << "," << h << "]=" << gl
                        << ", want -inf";
        }
      } else if (!(std::fabs(gl - wl) <= tolerance) && ++bad < 5) {
        ADD_FAILURE() << "lse[" << i << "," << h << "]=" << gl << ", want "
                      << wl;
      }
      for (int x = 0; x < c.head_dim; ++x) {
        const int64_t at = i * stride + h * c.head_dim + x;
        if (!(std::fabs(got.o[at] - want.o[at]) <= tolerance) && ++bad < 5) {
          ADD_FAILURE() << "o[" << i << "," << h << "," << x
                        << "]=" << got.o[at] << ", want " << want.o[at];
        }
      }
    }
    // Stride padding is not touched.
    for (int64_t x = c.num_heads * c.head_dim; x < stride; ++x) {
      if (got.o[i * stride + x] != 1234.5f && ++bad < 5) {
        ADD_FAILURE() << "padding written at token " << i;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  // name, heads, kv_heads, head_dim, block, n_q, q_pos0, n_kv, kv_pos0.
  cases.push_back({"PrefillFromZero", 8, 4, 64, 16, 203, 0, 203, 0});
  cases.push_back(
      {"ChunkAtEndOfKeys", 8, 2, 128, 32, 77, 300, 377, 0, true, DType::kF32});
  cases.push_back({"KeysPartlyInFuture", 4, 2, 64, 8, 40, 50, 100, 70});
  cases.push_back(
      {"KeysAllInPast", 6, 2, 48, 64, 70, 1000, 257, 0, true, DType::kBf16});
  cases.push_back({"KeysAllInFuture", 2, 1, 32, 16, 9, 10, 30, 500});
  cases.push_back({"NotCausal", 8, 4, 64, 16, 50, 0, 131, 20, false});
  cases.push_back({"Decode", 8, 4, 64, 256, 1, 1499, 1500, 0});
  cases.push_back({"DecodeMidRange", 32, 8, 128, 16, 1, 5000, 333, 1200});
  cases.push_back({"OddHeadDim", 3, 1, 40, 7, 37, 5, 60, 0});
  cases.push_back({"HeadDim256", 4, 4, 256, 16, 33, 0, 45, 0});
  cases.push_back({"HeadDim1", 2, 2, 1, 4, 19, 0, 19, 0});
  cases.push_back({"GroupOf7", 14, 2, 80, 16, 30, 20, 50, 0});
  cases.push_back({"GroupOf80", 80, 1, 16, 32, 5, 64, 69, 0});
  cases.push_back({"ExplicitScaleAndStride", 4, 2, 64, 16, 21, 0, 21, 0, true,
                   DType::kF16, 0.3f, 13});
  cases.push_back({"NoKeys", 4, 2, 64, 16, 5, 0, 0, 0});
  // Decode-sized calls (few query rows) and calls with few work items, whose
  // keys are split across threads when there are more threads than items.
  cases.push_back(
      {"DecodeLong", 4, 2, 128, 256, 1, 2599, 2600, 0, true, DType::kF32});
  cases.push_back({"DecodeGroupOf3Bf16", 6, 2, 40, 64, 1, 2100, 2100, 10, true,
                   DType::kBf16});
  cases.push_back({"DecodeThreeTokens", 4, 2, 256, 32, 3, 1100, 1104, 0});
  cases.push_back({"ShortChunkLongContext", 8, 2, 64, 128, 20, 1500, 1520, 0});
  // bf16 caches with head_dim 64, 128 and 256: with compute kBf16, decode
  // multiplies them as stored (odd key counts, blocks not multiples of 16).
  cases.push_back(
      {"DecodeBf16Cache", 8, 4, 64, 256, 1, 1499, 1500, 0, true, DType::kBf16});
  cases.push_back({"DecodeBf16CacheGroupOf8", 32, 4, 128, 24, 1, 3000, 2001,
                   1000, true, DType::kBf16});
  cases.push_back({"DecodeBf16CacheTwoTokens", 4, 2, 256, 40, 2, 1100, 1103, 0,
                   true, DType::kBf16});
  cases.push_back({"DecodeBf16CacheOneHead", 1, 1, 64, 16, 1, 332, 333, 0, true,
                   DType::kBf16});
  // Decode over thousands of keys, split across threads (7: more threads
  // than kv heads), with blocks not multiples of 16 keys.
  cases.push_back({"DecodeVeryLong", 8, 4, 64, 256, 1, 9999, 10000, 0});
  cases.push_back({"DecodeLongOddBlocks", 12, 3, 40, 48, 2, 6000, 5000, 1003,
                   true, DType::kF32});
  cases.push_back({"DecodeLongBf16Cache", 32, 4, 128, 40, 1, 4500, 4501, 0,
                   true, DType::kBf16});
  cases.push_back({"DecodeLongKeysInFuture", 4, 2, 64, 64, 2, 5000, 7000, 0,
                   true, DType::kBf16});
  Case peaky{"PeakySoftmax", 8, 4, 64, 16, 90, 0, 90, 0};
  peaky.q_magnitude = 12.0f;  // Scores up to ~±40.
  cases.push_back(peaky);
  return cases;
}

// Params: code path, threads, case. 7 threads (more than the work items of
// the decode cases) makes the kernel split keys across threads.
class AttentionTest
    : public ::testing::TestWithParam<std::tuple<CpuIsa, int, Case>> {
 protected:
  void SetUp() override {
    SetMaxCpuIsa(std::get<0>(GetParam()));
    saved_threads_ = NumThreads();
    SetNumThreads(std::get<1>(GetParam()));
  }
  void TearDown() override {
    SetMaxCpuIsa(CpuIsa::kBestCpuIsa);
    SetNumThreads(saved_threads_);
  }

 private:
  int saved_threads_ = 1;
};

TEST_P(AttentionTest, MatchesDoubleReference) {
  const Case& c = std::get<2>(GetParam());
  const PagedCache cache(c.dtype, c.num_kv_heads, c.head_dim, c.block_size,
                         c.n_kv, c.kv_pos0, 11);
  const int64_t stride = c.num_heads * c.head_dim + c.stride_pad;
  const std::vector<float> q = RandomQ(c, stride, 12);
  ExpectClose(c, RunKernel(c, cache, q, stride), Reference(c, cache, q, stride),
              stride);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, AttentionTest,
    ::testing::Combine(::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx512),
                       ::testing::Values(2, 7), ::testing::ValuesIn(Cases())),
    [](const auto& info) {
      return std::string(CpuIsaName(std::get<0>(info.param))) + "_" +
             std::to_string(std::get<1>(info.param)) + "threads_" +
             std::get<2>(info.param).name;
    });

// Params: threads, case. Compute kBf16 on the AVX512_BF16 path (where the
// CPU has it; elsewhere the kernel computes in fp32, which the fp32
// tolerance would also pass).
class AttentionBf16Test
    : public ::testing::TestWithParam<std::tuple<int, Case>> {
 protected:
  void SetUp() override {
    saved_threads_ = NumThreads();
    SetNumThreads(std::get<0>(GetParam()));
  }
  void TearDown() override { SetNumThreads(saved_threads_); }

 private:
  int saved_threads_ = 1;
};

TEST_P(AttentionBf16Test, MatchesDoubleReferenceWithinBf16Tolerance) {
  const Case& c = std::get<1>(GetParam());
  const PagedCache cache(c.dtype, c.num_kv_heads, c.head_dim, c.block_size,
                         c.n_kv, c.kv_pos0, 11);
  const int64_t stride = c.num_heads * c.head_dim + c.stride_pad;
  const std::vector<float> q = RandomQ(c, stride, 12);
  ExpectClose(c, RunKernel(c, cache, q, stride, DType::kBf16),
              Reference(c, cache, q, stride), stride, Bf16Tolerance(c));
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionBf16Test,
                         ::testing::Combine(::testing::Values(2, 7),
                                            ::testing::ValuesIn(Cases())),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) +
                                  "threads_" + std::get<1>(info.param).name;
                         });

// The bf16 path is the one that runs (its results differ from fp32's by the
// rounding of its inputs), and capping the ISA below AVX512_BF16 gives
// exactly the fp32 results.
TEST(AttentionBf16PathTest, RunsOnlyWhereTheCpuHasBf16) {
  const Case c{"Prefill", 8, 4, 64, 16, 150, 0, 150, 0};
  const PagedCache cache(c.dtype, c.num_kv_heads, c.head_dim, c.block_size,
                         c.n_kv, c.kv_pos0, 11);
  const int64_t stride = c.num_heads * c.head_dim;
  const std::vector<float> q = RandomQ(c, stride, 12);
  const Result fp32 = RunKernel(c, cache, q, stride, DType::kF32);
  const Result bf16 = RunKernel(c, cache, q, stride, DType::kBf16);
  if (DetectedCpuIsa() >= CpuIsa::kAvx512Bf16) {
    double largest = 0;
    for (size_t i = 0; i < fp32.o.size(); ++i) {
      largest = std::max(largest, double(std::fabs(fp32.o[i] - bf16.o[i])));
    }
    EXPECT_GT(largest, 1e-4) << "compute kBf16 gave fp32 results";
    EXPECT_LT(largest, kBf16Tolerance);
  }
  SetMaxCpuIsa(CpuIsa::kAvx512);
  const Result capped = RunKernel(c, cache, q, stride, DType::kBf16);
  SetMaxCpuIsa(CpuIsa::kBestCpuIsa);
  EXPECT_EQ(capped.o, fp32.o);
  EXPECT_EQ(capped.lse, fp32.lse);
}

TEST(AttentionSplitTest, SplitKvMergesToFullResult) {
  // Ring attention and split-KV decode: partials over consecutive key ranges,
  // merged with MergeAttention, equal one call over all keys.
  Case c{"Split", 8, 4, 64, 16, 150, 100, 250, 0};
  const PagedCache cache(c.dtype, c.num_kv_heads, c.head_dim, c.block_size,
                         c.n_kv, c.kv_pos0, 21);
  const int64_t stride = c.num_heads * c.head_dim;
  const std::vector<float> q = RandomQ(c, stride, 22);
  const Result full = RunKernel(c, cache, q, stride);

  Result merged;
  const int64_t cuts[] = {0, 48, 112, 250};  // Block-aligned key ranges.
  for (int part = 0; part < 3; ++part) {
    PagedKv view = cache.view();
    const int64_t first_block = cuts[part] / c.block_size;
    view.k_blocks += first_block;
    view.v_blocks += first_block;
    view.num_tokens = cuts[part + 1] - cuts[part];
    view.start_pos = c.kv_pos0 + cuts[part];
    Result r;
    r.o.resize(c.n_q * stride);
    r.lse.resize(c.n_q * c.num_heads);
    AttentionParams params;
    params.num_heads = c.num_heads;
    params.q_start_pos = c.q_pos0;
    ASSERT_TRUE(FlashAttention(q.data(), c.n_q, stride, view, params,
                               r.o.data(), stride, r.lse.data())
                    .ok());
    if (part == 0) {
      merged = r;
    } else {
      MergeAttention(merged.o.data(), stride, merged.lse.data(), r.o.data(),
                     stride, r.lse.data(), c.n_q, c.num_heads, c.head_dim);
    }
  }
  for (size_t i = 0; i < full.o.size(); ++i) {
    ASSERT_NEAR(merged.o[i], full.o[i], 1e-5) << i;
  }
  for (size_t i = 0; i < full.lse.size(); ++i) {
    ASSERT_NEAR(merged.lse[i], full.lse[i], 1e-5) << i;
  }
}

TEST(AttentionThreadsTest, ResultDoesNotDependOnThreadCount) {
  Case c{"Threads", 8, 4, 64, 32, 300, 0, 300, 0};
  const PagedCache cache(c.dtype, c.num_kv_heads, c.head_dim, c.block_size,
                         c.n_kv, c.kv_pos0, 31);
  const int64_t stride = c.num_heads * c.head_dim;
  const std::vector<float> q = RandomQ(c, stride, 32);
  const int saved = NumThreads();
  SetNumThreads(1);
  const Result one = RunKernel(c, cache, q, stride);
  SetNumThreads(3);
  const Result three = RunKernel(c, cache, q, stride);
  SetNumThreads(saved);
  EXPECT_EQ(one.o, three.o);
  EXPECT_EQ(one.lse, three.lse);
}

TEST(AttentionErrorsTest, RejectsInconsistentShapes) {
  const PagedCache cache(DType::kF16, 2, 64, 16, 10, 0, 41);
  std::vector<float> q(10 * 8 * 64), o(q.size()), lse(10 * 8);
  AttentionParams params;
  params.num_heads = 3;  // Not a multiple of 2 kv heads.
  EXPECT_EQ(FlashAttention(q.data(), 10, 3 * 64, cache.view(), params, o.data(),
                           3 * 64, lse.data())
                .code(),
            absl::StatusCode::kInvalidArgument);
  params.num_heads = 8;
  EXPECT_EQ(FlashAttention(q.data(), 10, 100, cache.view(), params, o.data(),
                           8 * 64, lse.data())
                .code(),
            absl::StatusCode::kInvalidArgument);  // Short q stride.
  PagedKv wide = cache.view();
  wide.head_dim = 257;
  EXPECT_EQ(FlashAttention(q.data(), 1, 8 * 257, wide, params, o.data(),
                           8 * 257, lse.data())
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(FlashAttention(q.data(), 10, 8 * 64, cache.view(), params,
                             o.data(), 8 * 64, nullptr)
                  .ok());  // lse is optional.
  params.compute = DType::kF16;
  EXPECT_EQ(FlashAttention(q.data(), 10, 8 * 64, cache.view(), params, o.data(),
                           8 * 64, lse.data())
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace longctx::kernels
