// SampleNextToken: draws a sequence's next token from its logits with the
// kernels' seeded sampler, and fills the log-probabilities a request asked for.
#ifndef LONGCTX_ENGINE_SAMPLER_H_
#define LONGCTX_ENGINE_SAMPLER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace longctx {

// SampleNextToken draws from `logits` [vocab] for the `step`-th generated token
// of a request with `params` (the same seed, logits and step always give the
// same token). When `logprob` is not null it receives the token's
// log-probability and params.top_logprobs alternatives (text left empty).
// INVALID_ARGUMENT if the logits hold no finite value (a broken model).
absl::StatusOr<int32_t> SampleNextToken(const float* logits, int vocab,
                                        const GenerateParams& params, int step,
                                        TokenLogprob* logprob);

}  // namespace longctx

#endif  // LONGCTX_ENGINE_SAMPLER_H_
