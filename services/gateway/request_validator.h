// Validation of public GenerateRequests at the gateway: every field is checked
// against the model and the gateway's limits before anything runs, and defaults
// are resolved, so workers receive only well-formed requests (the rules of
// services/common/request_rules.h, which every worker checks again).
#ifndef LONGCTX_SERVICES_GATEWAY_REQUEST_VALIDATOR_H_
#define LONGCTX_SERVICES_GATEWAY_REQUEST_VALIDATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/longctx.pb.h"
#include "proto/worker.pb.h"
#include "services/common/request_rules.h"
#include "services/gateway/gateway_limits.h"

namespace longctx {

// ValidatedRequest is a request ready for a worker group.
struct ValidatedRequest {
  // The worker request, with the prompt left empty (see CheckPromptTokens) and
  // every default resolved: temperature, top_p and seed set, max_new_tokens >=
  // 1, the model's eos ids among the stop ids unless ignore_eos.
  worker::v1::GenerateRequest worker_request;
  // Stop strings, matched by the gateway on the generated text.
  std::vector<std::string> stop_sequences;
  // The cache policy, decoded once: whether the request may reuse cached or
  // stored prompt blocks, and whether its blocks may be cached and stored.
  bool cache_read = true;
  bool cache_write = true;
};

// SamplingDefaults are what a request that leaves a field unset gets (the
// model folder's generation_config.json, else these values).
struct SamplingDefaults {
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;
  // New tokens of a request that sets none, below --default_max_new_tokens
  // when smaller; 0: --default_max_new_tokens.
  int max_new_tokens = 0;
};

// ValidateGenerateRequest checks everything but the prompt's tokens. Errors are
// INVALID_ARGUMENT with a message that names the field, its value and the
// limit. `random_seed` is used when the request sets no seed.
absl::StatusOr<ValidatedRequest> ValidateGenerateRequest(
    const v1::GenerateRequest& request, const v1::ModelInfo& model,
    const GatewayLimits& limits, uint64_t random_seed,
    const SamplingDefaults& defaults = SamplingDefaults());

// CheckPromptTokens checks a tokenized prompt: INVALID_ARGUMENT if it is empty
// or an id is outside the vocabulary (naming `field` and the index),
// RESOURCE_EXHAUSTED if it is longer than --max_prompt_tokens.
absl::Status CheckPromptTokens(absl::Span<const int32_t> ids,
                               const v1::ModelInfo& model,
                               const GatewayLimits& limits,
                               const std::string& field);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_REQUEST_VALIDATOR_H_
