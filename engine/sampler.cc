#include "engine/sampler.h"

#include <vector>

#include "kernels/sampling.h"

namespace longctx {

absl::StatusOr<int32_t> SampleNextToken(const float* logits, int vocab,
                                        const GenerateParams& params, int step,
                                        v1::TokenLogprob* logprob) {
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
    logprob->set_token_id(chosen->token);
    logprob->set_logprob(chosen->logprob);
    if (params.top_logprobs > 0) {
      std::vector<kernels::TokenLogprob> top(
          static_cast<size_t>(std::min(params.top_logprobs, vocab)));
      kernels::TopLogprobs(row, absl::MakeSpan(top));
      for (const kernels::TokenLogprob& t : top) {
        v1::TopLogprob* out = logprob->add_top();
        out->set_token_id(t.token);
        out->set_logprob(t.logprob);
      }
    }
  }
  return chosen->token;
}

}  // namespace longctx
