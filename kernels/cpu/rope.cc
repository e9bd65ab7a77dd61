#include "kernels/rope.h"

#include <cmath>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/parallel.h"

namespace longctx::kernels {
namespace {

constexpr int kMaxHalf = 512;  // Supports head_dim up to 1024.
constexpr double kPi = 3.14159265358979323846;

void Rotate(float* x, int heads, int head_dim, const float* cos_a,
            const float* sin_a) {
  const int half = head_dim / 2;
  for (int h = 0; h < heads; ++h) {
    float* a = x + static_cast<int64_t>(h) * head_dim;
    float* b = a + half;
    for (int i = 0; i < half; ++i) {
      const float xa = a[i];
      const float xb = b[i];
      a[i] = xa * cos_a[i] - xb * sin_a[i];
      b[i] = xb * cos_a[i] + xa * sin_a[i];
    }
  }
}

}  // namespace

absl::Status ComputeRopeInvFreq(const RopeParams& params, float* inv_freq) {
  const int d = params.head_dim;
  if (d <= 0 || d % 2 != 0 || d / 2 > kMaxHalf) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rope: head_dim ", d, " must be even and in 2..", 2 * kMaxHalf));
  }
  if (!(params.theta > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: rope_theta ", params.theta, " must be positive"));
  }
  const Llama3RopeScaling& s = params.llama3_scaling;
  if (params.use_llama3_scaling &&
      (!(s.factor > 0) || s.original_max_position_embeddings <= 0 ||
       !(s.high_freq_factor > s.low_freq_factor))) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: llama3 rope_scaling needs factor > 0 (got ",
                     s.factor, "), original_max_position_embeddings > 0 (got ",
                     s.original_max_position_embeddings,
                     ") and high_freq_factor > "
                     "low_freq_factor (got ",
                     s.high_freq_factor, " and ", s.low_freq_factor, ")"));
  }
  for (int i = 0; i < d / 2; ++i) {
    double f = std::pow(params.theta, -2.0 * i / d);
    if (params.use_llama3_scaling) {
      // Hugging Face _compute_llama3_parameters: long wavelengths are slowed
      // by `factor`, short ones kept, and the band between interpolated.
      const double old_len = s.original_max_position_embeddings;
      const double low_freq_wavelen = old_len / s.low_freq_factor;
      const double high_freq_wavelen = old_len / s.high_freq_factor;
      const double wavelen = 2 * kPi / f;
      if (wavelen > low_freq_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth = (old_len / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
    inv_freq[i] = static_cast<float>(f);
  }
  return absl::OkStatus();
}

void ApplyRope(const float* inv_freq, int head_dim, const int32_t* positions,
               int64_t n_tokens, float* q, int64_t q_stride, int q_heads,
               float* k, int64_t k_stride, int k_heads) {
  const int half = head_dim / 2;
  const int heads = q_heads + (k != nullptr ? k_heads : 0);
  internal::ParallelFor(n_tokens, n_tokens * heads * head_dim, [&](int64_t t) {
    float cos_a[kMaxHalf];
    float sin_a[kMaxHalf];
    const double p = positions[t];
    for (int i = 0; i < half; ++i) {
      const double angle = p * static_cast<double>(inv_freq[i]);
      cos_a[i] = static_cast<float>(std::cos(angle));
      sin_a[i] = static_cast<float>(std::sin(angle));
    }
    Rotate(q + t * q_stride, q_heads, head_dim, cos_a, sin_a);
    if (k != nullptr) Rotate(k + t * k_stride, k_heads, head_dim, cos_a, sin_a);
  });
}

}  // namespace longctx::kernels
