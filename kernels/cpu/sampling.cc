#include "kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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

// LogitScan summarizes the logits.
struct LogitScan {
  float max = kNegInf;  // Largest non-NaN logit.
  int32_t argmax = 0;   // Lowest id among maxima.
};

LONGCTX_TARGET_AVX512 float MaxAvx512(const float* l, int64_t n) {
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
  __m512 max = neg_inf;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m =
        internal::TailMask(n - i < 16 ? static_cast<int>(n - i) : 16);
    // max_ps returns its second operand when either is NaN: NaN is skipped.
    max = _mm512_max_ps(_mm512_mask_loadu_ps(neg_inf, m, l + i), max);
  }
  return _mm512_reduce_max_ps(max);
}

LogitScan Scan(const float* l, int64_t n) {
  LogitScan scan;
  if (ActiveCpuIsa() >= CpuIsa::kAvx512) {
    scan.max = MaxAvx512(l, n);
  } else {
    for (int64_t i = 0; i < n; ++i)
      scan.max = l[i] > scan.max ? l[i] : scan.max;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (l[i] == scan.max) {
      scan.argmax = static_cast<int32_t>(i);
      break;
    }
  }
  return scan;
}

// SelectTop returns the ids of the k highest logits in ByLogit order. A
// min-heap of size k holds the best so far; most tokens are rejected by one
// comparison with the worst kept logit.
std::vector<int32_t> SelectTop(const float* l, int64_t n, int64_t k) {
  const ByLogit by_logit{l};
  std::vector<int32_t> heap;
  heap.reserve(k);
  // With by_logit as "less", the heap's front is the worst kept id.
  int64_t i = 0;
  for (; i < n && static_cast<int64_t>(heap.size()) < k; ++i) {
    heap.push_back(static_cast<int32_t>(i));
    std::push_heap(heap.begin(), heap.end(), by_logit);
  }
  float worst = Clean(l[heap.front()]);
  for (; i < n; ++i) {
    // Ids only grow, so a tie with the worst kept logit never displaces it.
    if (!(l[i] > worst)) continue;
    std::pop_heap(heap.begin(), heap.end(), by_logit);
    heap.back() = static_cast<int32_t>(i);
    std::push_heap(heap.begin(), heap.end(), by_logit);
    worst = Clean(l[heap.front()]);
  }
  std::sort_heap(heap.begin(), heap.end(), by_logit);
  return heap;
}

}  // namespace

float LogSumExp(absl::Span<const float> logits) {
  if (ActiveCpuIsa() >= CpuIsa::kAvx512) {
    return LogSumExpAvx512(logits.data(), static_cast<int64_t>(logits.size()));
  }
  return LogSumExpScalar(logits.data(), static_cast<int64_t>(logits.size()));
}

void TopLogprobs(absl::Span<const float> logits, absl::Span<TokenLogprob> top) {
  const int64_t n = std::min(top.size(), logits.size());
  if (n == 0) return;
  const std::vector<int32_t> ids = SelectTop(logits.data(), logits.size(), n);
  const float lse = LogSumExp(logits);
  for (int64_t i = 0; i < n; ++i) {
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
  const LogitScan scan = Scan(l, vocab);
  if (scan.max == std::numeric_limits<float>::infinity()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Sample: logit of token ", scan.argmax, " is +inf"));
  }
  if (scan.max == kNegInf) {
    return absl::InvalidArgumentError("Sample: no token has a finite logit");
  }
  const float lse = LogSumExp(logits);
  auto pick = [l, lse](int32_t token) {
    return TokenLogprob{token, Clean(l[token]) - lse};
  };
  if (params.temperature == 0 || params.top_k == 1) return pick(scan.argmax);

  // Unnormalized probabilities at temperature T: exp((l - max) / T), 1 for
  // the most likely token. The exponent is formed in double so that tiny
  // temperatures do not overflow; below -150 the float exp is 0 anyway.
  const double max = scan.max;
  const double inv_t = 1.0 / params.temperature;
  auto weight = [l, max, inv_t](int32_t i) {
    const double z = (static_cast<double>(Clean(l[i])) - max) * inv_t;
    return static_cast<double>(
        std::exp(static_cast<float>(std::max(z, -150.0))));
  };
  const double draw = UniformDraw(params.seed, step);

  // ids: candidate tokens; for top-p, the first `sorted` are in ByLogit order.
  std::vector<int32_t> ids;
  int64_t candidates = vocab;
  const bool top_k = params.top_k > 0 && params.top_k < vocab;
  const bool top_p = params.top_p < 1;
  if (top_k) {
    ids = SelectTop(l, vocab, params.top_k);
    candidates = params.top_k;
  }
  auto id_at = [&ids, top_k](int64_t i) {
    return top_k ? ids[i] : static_cast<int32_t>(i);
  };
  std::vector<double> w(candidates);
  double total = 0;
  for (int64_t i = 0; i < candidates; ++i) total += w[i] = weight(id_at(i));

  int64_t kept = candidates;
  double kept_total = total;
  if (top_p) {
    // The nucleus: the most likely candidates until their share of the
    // (top-k) total reaches top_p. Select only as many as it needs.
    const double needed = params.top_p * total;
    int64_t sorted = std::min<int64_t>(candidates, 64);
    std::vector<int32_t> nucleus;
    for (;;) {
      nucleus = top_k ? std::vector<int32_t>(ids.begin(), ids.begin() + sorted)
                      : SelectTop(l, vocab, sorted);
      kept_total = 0;
      kept = 0;
      while (kept < sorted && kept_total < needed) {
        kept_total += weight(nucleus[kept]);
        ++kept;
      }
      if (kept_total >= needed || sorted == candidates) break;
      sorted = std::min(candidates, sorted * 4);
    }
    nucleus.resize(kept);
    ids = std::move(nucleus);
    for (int64_t i = 0; i < kept; ++i) w[i] = weight(ids[i]);
  }
  const bool by_index = !top_k && !top_p;
  const double target = draw * kept_total;
  double cumulative = 0;
  int32_t last_nonzero = scan.argmax;
  for (int64_t i = 0; i < kept; ++i) {
    if (w[i] == 0) continue;
    cumulative += w[i];
    last_nonzero = by_index ? static_cast<int32_t>(i) : ids[i];
    if (cumulative > target) return pick(last_nonzero);
  }
  return pick(last_nonzero);  // Rounding left the target just past the end.
}

}  // namespace longctx::kernels
