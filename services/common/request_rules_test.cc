#include "services/common/request_rules.h"

#include <cmath>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace longctx {
namespace {

WorkerRequestLimits Limits() {
  WorkerRequestLimits limits;
  limits.vocab_size = 100;
  limits.max_prompt_tokens = 1000;
  limits.max_new_tokens = 1000;
  return limits;
}

worker::v1::GenerateRequest Good() {
  worker::v1::GenerateRequest r;
  r.set_request_id("r");
  for (int id : {1, 2, 99}) r.add_prompt_token_ids(id);
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_p(0.9f);
  r.set_max_new_tokens(10);
  r.add_stop_token_ids(0);
  r.set_cache_policy(v1::CACHE_POLICY_READ_WRITE);
  r.set_stored_prefix_tokens(3);
  r.set_cache_namespace("tenant-a");
  return r;
}

TEST(CheckWorkerRequestTest, AcceptsAWellFormedRequest) {
  EXPECT_TRUE(CheckWorkerRequest(Good(), Limits()).ok());
}

// Each malformed field is refused with a status that names it.
TEST(CheckWorkerRequestTest, RefusesEachMalformedField) {
  struct Case {
    void (*mutate)(worker::v1::GenerateRequest*);
    absl::StatusCode code;
    std::string names;
  };
  const Case cases[] = {
      {[](auto* r) { r->set_request_id(std::string(129, 'r')); },
       absl::StatusCode::kInvalidArgument, "request_id"},
      {[](auto* r) { r->clear_prompt_token_ids(); },
       absl::StatusCode::kInvalidArgument, "prompt is empty"},
      {[](auto* r) { r->set_prompt_token_ids(1, 100); },
       absl::StatusCode::kInvalidArgument, "prompt_token_ids[1] is 100"},
      {[](auto* r) { r->set_prompt_token_ids(2, -1); },
       absl::StatusCode::kInvalidArgument, "prompt_token_ids[2] is -1"},
      {[](auto* r) {
         for (int i = 0; i < 1000; ++i) r->add_prompt_token_ids(5);
       },
       absl::StatusCode::kResourceExhausted, "--kv_cache_bytes"},
      {[](auto* r) { r->set_max_new_tokens(0); },
       absl::StatusCode::kInvalidArgument, "max_new_tokens is 0"},
      {[](auto* r) {
         r->set_max_new_tokens(std::numeric_limits<int32_t>::max());
       },
       absl::StatusCode::kResourceExhausted, "max_new_tokens is 2147483647"},
      {[](auto* r) { r->mutable_sampling()->set_temperature(NAN); },
       absl::StatusCode::kInvalidArgument, "sampling.temperature"},
      {[](auto* r) { r->mutable_sampling()->set_temperature(INFINITY); },
       absl::StatusCode::kInvalidArgument, "sampling.temperature"},
      {[](auto* r) { r->mutable_sampling()->set_top_p(0); },
       absl::StatusCode::kInvalidArgument, "sampling.top_p"},
      {[](auto* r) { r->mutable_sampling()->set_top_k(-1); },
       absl::StatusCode::kInvalidArgument, "sampling.top_k"},
      {[](auto* r) { r->add_stop_token_ids(100); },
       absl::StatusCode::kInvalidArgument, "stop_token_ids[1] is 100"},
      {[](auto* r) {
         for (int i = 0; i < kMaxStopTokenIds + kMaxEosTokenIds; ++i) {
           r->add_stop_token_ids(1);
         }
       },
       absl::StatusCode::kInvalidArgument, "stop_token_ids has"},
      {[](auto* r) { r->set_cache_policy(static_cast<v1::CachePolicy>(77)); },
       absl::StatusCode::kInvalidArgument, "cache_policy 77"},
      {[](auto* r) { r->mutable_logprobs()->set_top_logprobs(21); },
       absl::StatusCode::kInvalidArgument, "logprobs.top_logprobs is 21"},
      {[](auto* r) { r->mutable_logprobs()->set_top_logprobs(2); },
       absl::StatusCode::kInvalidArgument, "logprobs.enabled is false"},
      {[](auto* r) { r->set_stored_prefix_tokens(4); },
       absl::StatusCode::kInvalidArgument, "stored_prefix_tokens is 4"},
      {[](auto* r) { r->set_cache_namespace(std::string(257, 'n')); },
       absl::StatusCode::kInvalidArgument, "cache_namespace has 257"},
  };
  for (const Case& c : cases) {
    worker::v1::GenerateRequest request = Good();
    c.mutate(&request);
    absl::Status status = CheckWorkerRequest(request, Limits());
    EXPECT_EQ(status.code(), c.code) << c.names << ": " << status;
    EXPECT_NE(status.message().find(c.names), std::string::npos)
        << c.names << ": " << status;
  }
}

}  // namespace
}  // namespace longctx
