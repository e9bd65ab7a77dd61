#include "engine/sampler.h"

#include <algorithm>
#include <vector>

#include "kernels/sampling.h"

namespace longctx {

absl::StatusOr<int32_t> SampleNextToken(const float* logits, int vocab,
                                        const GenerateParams& params, int step,
                                        TokenLogprob* logprob) {
  kernels::SamplingParams sampling;
  sampling.temperature = params.temperature;
  sampling.top_k = params.top_k;
  sampling.top_p = params.top_p;
  sampling.seed = params.seed;
  absl::Span<const float> row(logits, static_cast<size_t>(vocab));
  absl::StatusOr<kernels::TokenLogprob> chosen =
      kernels::Sample(row, sampling, static_cast<uint64_t>(step));
  if (!chosen.ok()) return chosen.status();
  if (logprob != nullptr) {
    logprob->token = chosen->token;
    logprob->logprob = chosen->logprob;
    logprob->top.assign(
        static_cast<size_t>(std::max(0, std::min(params.top_logprobs, vocab))),
        kernels::TokenLogprob{});
    kernels::TopLogprobs(row, absl::MakeSpan(logprob->top));
  }
  return chosen->token;
}

}  // namespace longctx
