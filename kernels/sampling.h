// Token sampling from a row of fp32 logits, and log-probabilities.
//
// The pipeline follows Hugging Face's warpers: temperature, then top-k, then
// top-p (nucleus) over the renormalized top-k set, then one draw. Draws are
// deterministic: the same logits, params, seed and step give the same token,
// whatever the thread or the instruction set (the probabilities behind a draw
// use only the C library's exp), and there is no global random state. Use
// the sequence's seed and the index of the generated token as `step`.
//
// Logits must be finite or -inf (a masked token; NaN counts as -inf).
// Log-probabilities are of the model's own distribution, log_softmax(logits),
// before temperature, top-k and top-p.
#ifndef LONGCTX_KERNELS_SAMPLING_H_
#define LONGCTX_KERNELS_SAMPLING_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace longctx::kernels {

// SamplingParams selects how a token is drawn.
struct SamplingParams {
  // Divides the logits; 0 means greedy (the most likely token, the lowest id
  // among ties). Default: 1.
  float temperature = 1.0f;
  // Keeps only the top_k most likely tokens; 0 keeps all. Default: 0.
  int top_k = 0;
  // Keeps the smallest set of most likely tokens whose probability reaches
  // top_p, in (0, 1]; 1 keeps all. Default: 1.
  float top_p = 1.0f;
  // Seed of the sequence's draws. Default: 0.
  uint64_t seed = 0;
};

// TokenLogprob is a token and its log-probability (natural log).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// Sample draws one token from logits (the vocabulary, in id order) and
// returns it with its log-probability. Thread-safe. Unless greedy, allocates
// O(vocab) temporary memory (O(top_k) with top_k alone).
// INVALID_ARGUMENT for empty logits, bad params (temperature < 0, top_k < 0,
// top_p outside (0, 1]), a +inf logit, or no token with a finite logit.
absl::StatusOr<TokenLogprob> Sample(absl::Span<const float> logits,
                                    const SamplingParams& params,
                                    uint64_t step);

// TopLogprobs fills `top` with the top.size() most likely tokens (highest
// logit first, lower id first among ties) and their log-probabilities; if
// top is longer than the vocabulary only its first logits.size() entries are
// written. Thread-safe.
void TopLogprobs(absl::Span<const float> logits, absl::Span<TokenLogprob> top);

// LogSumExp returns log(sum_i exp(logits[i])), or -inf if every logit is
// -inf or NaN. log_softmax(logits)[i] = logits[i] - LogSumExp(logits).
float LogSumExp(absl::Span<const float> logits);

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_SAMPLING_H_
