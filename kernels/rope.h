// Rotary position embeddings, Hugging Face Llama convention ("rotate_half").
//
// For a head vector x of even size d, half = d / 2, and position p:
//
//   a_i = p * inv_freq[i],  i < half
//   y[i]        = x[i] * cos(a_i) - x[i + half] * sin(a_i)
//   y[i + half] = x[i + half] * cos(a_i) + x[i] * sin(a_i)
//
// inv_freq[i] = theta^(-2i / d), optionally rescaled as Llama 3.1's
// rope_scaling {"rope_type": "llama3", factor, low_freq_factor,
// high_freq_factor, original_max_position_embeddings}. Angles and their
// sines and cosines are computed in double precision, so results stay
// accurate at positions in the millions.
#ifndef LONGCTX_KERNELS_ROPE_H_
#define LONGCTX_KERNELS_ROPE_H_

#include <cstdint>

#include "absl/status/status.h"

namespace longctx::kernels {

// Llama3RopeScaling holds the rope_scaling fields of a Llama 3.1 config.json.
struct Llama3RopeScaling {
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

// RopeParams describes the rotary embedding of a model.
struct RopeParams {
  int head_dim = 0;  // Even, 2..1024.
  // config.json "rope_theta". Default: 10000.
  double theta = 10000.0;
  // Whether rope_scaling is Llama 3 style; otherwise there is no scaling.
  bool use_llama3_scaling = false;
  Llama3RopeScaling llama3_scaling;
};

// ComputeRopeInvFreq writes the head_dim / 2 inverse frequencies (radians per
// position) to inv_freq, equal to Hugging Face's up to fp32 rounding.
// INVALID_ARGUMENT for an odd or non-positive head_dim, theta <= 0, or
// scaling with factor <= 0, original_max_position_embeddings <= 0 or
// high_freq_factor <= low_freq_factor.
absl::Status ComputeRopeInvFreq(const RopeParams& params, float* inv_freq);

// ApplyRope rotates, in place, every head of q (and of k, unless k is null)
// for n_tokens tokens at absolute positions positions[0..n_tokens).
// q is [n_tokens, q_heads, head_dim] with token stride q_stride >= q_heads *
// head_dim; likewise k with k_heads and k_stride. inv_freq has head_dim / 2
// entries from a successful ComputeRopeInvFreq (so head_dim is even and at
// most 1024). Thread-safe; large inputs run on the calling thread's OpenMP
// team.
void ApplyRope(const float* inv_freq, int head_dim, const int32_t* positions,
               int64_t n_tokens, float* q, int64_t q_stride, int q_heads,
               float* k, int64_t k_stride, int k_heads);

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_ROPE_H_
