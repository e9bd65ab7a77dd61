#include "kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu_isa.h"

namespace longctx::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Clean maps NaN to -inf.
inline float Clean(float x) { return std::isnan(x) ? kNegInf : x; }

// SplitMix64 (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// UniformDraw returns a number in [0, 1) determined by (seed, step) alone.
double UniformDraw(uint64_t seed, uint64_t step) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ step);
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

// Ranks tokens by logit, highest first, lower id first among ties.
struct ByLogit {
  const float* logits;
  bool operator()(int32_t a, int32_t b) const {
    const float la = Clean(logits[a]);
    const float lb = Clean(logits[b]);
    return la > lb || (la == lb && a < b);
  }
};

LONGCTX_TARGET_AVX512 float LogSumExpAvx512(const float* x, int64_t n) {
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
  __m512 max = neg_inf;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m =
        internal::TailMask(n - i < 16 ? static_cast<int>(n - i) : 16);
    __m512 v = _mm512_mask_loadu_ps(neg_inf, m, x + i);
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), neg_inf);
    max = _mm512_max_ps(max, v);
  }
  const float top = _mm512_reduce_max_ps(max);
  if (top == kNegInf || std::isinf(top)) return top;
  const __m512 shift = _mm512_set1_ps(top);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m =
        internal::TailMask(n - i < 16 ? static_cast<int>(n - i) : 16);
    __m512 v = _mm512_mask_loadu_ps(neg_inf, m, x + i);
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), neg_inf);
    sum = _mm512_add_ps(sum, internal::ExpAvx512(_mm512_sub_ps(v, shift)));
  }
  return top + std::log(_mm512_reduce_add_ps(sum));
}

float LogSumExpScalar(const float* x, int64_t n) {
  float top = kNegInf;
  for (int64_t i = 0; i < n; ++i) top = std::max(top, Clean(x[i]));
  if (top == kNegInf || std::isinf(top)) return top;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(Clean(x[i]) - top);
  return top + static_cast<float>(std::log(sum));
}

}  // namespace

float LogSumExp(absl::Span<const float> logits) {
  if (ActiveCpuIsa() >= CpuIsa::kAvx512) {
    return LogSumExpAvx512(logits.data(), static_cast<int64_t>(logits.size()));
  }
  return LogSumExpScalar(logits.data(), static_cast<int64_t>(logits.size()));
}

void TopLogprobs(absl::Span<const float> logits, absl::Span<TokenLogprob> top) {
  const size_t n = std::min(top.size(), logits.size());
  if (n == 0) return;
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(),
                    ByLogit{logits.data()});
  const float lse = LogSumExp(logits);
  for (size_t i = 0; i < n; ++i) {
    top[i].token = ids[i];
    top[i].logprob = Clean(logits[ids[i]]) - lse;
  }
}

absl::StatusOr<TokenLogprob> Sample(absl::Span<const float> logits,
                                    const SamplingParams& params,
                                    uint64_t step) {
  if (logits.empty()) {
    return absl::InvalidArgumentError("Sample: no logits");
  }
  if (!(params.temperature >= 0) || params.top_k < 0 ||
      !(params.top_p > 0 && params.top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Sample: temperature ", params.temperature, " must be >= 0, top_k ",
        params.top_k, " >= 0 and top_p ", params.top_p, " in (0, 1]"));
  }
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const float* l = logits.data();
  int32_t best = 0;
  float max = kNegInf;
  for (int64_t i = 0; i < vocab; ++i) {
    const float v = Clean(l[i]);
    if (v == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Sample: logit of token ", i, " is +inf"));
    }
    if (v > max) {
      max = v;
      best = static_cast<int32_t>(i);
    }
  }
  if (max == kNegInf) {
    return absl::InvalidArgumentError("Sample: no token has a finite logit");
  }
  const float lse = LogSumExp(logits);
  if (params.temperature == 0 || params.top_k == 1) {
    return TokenLogprob{best, max - lse};
  }

  // Unnormalized probabilities at temperature T: exp((l - max) / T). The
  // scalar std::exp keeps draws identical on every instruction set.
  const double inv_t = 1.0 / params.temperature;
  auto weight = [&](int32_t i) {
    return std::exp((static_cast<double>(Clean(l[i])) - max) * inv_t);
  };
  const double draw = UniformDraw(params.seed, step);
  auto pick = [&](int32_t token) {
    return TokenLogprob{token, Clean(l[token]) - lse};
  };

  const bool top_k = params.top_k > 0 && params.top_k < vocab;
  const bool top_p = params.top_p < 1;
  if (!top_k && !top_p) {
    std::vector<double> w(vocab);
    double total = 0;
    for (int64_t i = 0; i < vocab; ++i) total += w[i] = weight(i);
    double cumulative = 0;
    const double target = draw * total;
    int32_t last_nonzero = best;
    for (int64_t i = 0; i < vocab; ++i) {
      if (w[i] == 0) continue;
      cumulative += w[i];
      last_nonzero = static_cast<int32_t>(i);
      if (cumulative > target) return pick(last_nonzero);
    }
    return pick(last_nonzero);  // Rounding left the target just past the end.
  }

  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  const ByLogit by_logit{l};
  if (top_k) {
    std::nth_element(ids.begin(), ids.begin() + params.top_k, ids.end(),
                     by_logit);
    ids.resize(params.top_k);
  }
  const int64_t candidates = static_cast<int64_t>(ids.size());
  std::vector<double> w(candidates);
  int64_t kept = candidates;
  double kept_total = 0;
  if (top_p) {
    // Probabilities are relative to the (top-k) candidates' total. Sort only
    // as many of the most likely candidates as the nucleus needs.
    double total = 0;
    for (int32_t id : ids) total += weight(id);
    const double needed = params.top_p * total;
    int64_t sorted = std::min<int64_t>(candidates, 64);
    for (;;) {
      std::partial_sort(ids.begin(), ids.begin() + sorted, ids.end(),
                        by_logit);
      kept_total = 0;
      kept = 0;
      while (kept < sorted && kept_total < needed) {
        kept_total += w[kept] = weight(ids[kept]);
        ++kept;
      }
      if (kept_total >= needed || sorted == candidates) break;
      sorted = std::min(candidates, sorted * 4);
    }
  } else {
    for (int64_t i = 0; i < candidates; ++i) kept_total += w[i] = weight(ids[i]);
  }
  const double target = draw * kept_total;
  double cumulative = 0;
  int32_t last_nonzero = ids[0];
  for (int64_t i = 0; i < kept; ++i) {
    if (w[i] == 0) continue;
    cumulative += w[i];
    last_nonzero = ids[i];
    if (cumulative > target) return pick(last_nonzero);
  }
  return pick(last_nonzero);
}

}  // namespace longctx::kernels
