// Gateway limits with real processes: concurrent requests beyond
// --max_concurrent_requests are refused with RESOURCE_EXHAUSTED, nothing is
// lost, and every request leaves one structured log line.
#include <string>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

TEST(LimitsTest, RequestsBeyondTheConcurrencyLimitAreRefusedAndTheRestServed) {
  testing::LocalStack stack;
  testing::StackOptions options;
  options.gateway_flags = {"--max_concurrent_requests=1"};
  absl::Status started = stack.Start(options);
  ASSERT_TRUE(started.ok()) << started;
  auto stub = v1::LongContext::NewStub(grpc::CreateChannel(
      stack.gateway().address(), grpc::InsecureChannelCredentials()));

  v1::GenerateRequest long_request;
  long_request.set_text("a request that keeps the only slot busy");
  long_request.set_request_id("busy-1");
  long_request.mutable_stopping()->set_max_new_tokens(4000);
  long_request.mutable_stopping()->set_ignore_eos(true);
  grpc::ClientContext busy_context;
  auto busy = stub->Generate(&busy_context, long_request);
  v1::GenerateResponse response;
  ASSERT_TRUE(busy->Read(&response));  // It is running.

  v1::GenerateRequest second;
  second.set_text("second");
  second.set_request_id("refused-2");
  grpc::ClientContext refused_context;
  auto refused = stub->Generate(&refused_context, second);
  while (refused->Read(&response)) {
  }
  grpc::Status status = refused->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_concurrent_requests"));

  // The running request is unharmed; once it ends the slot is free again.
  ASSERT_TRUE(busy->Read(&response));
  busy_context.TryCancel();
  while (busy->Read(&response)) {
  }
  busy->Finish();
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  grpc::Status third_status;
  do {
    grpc::ClientContext context;
    v1::GenerateRequest third = second;
    third.set_request_id("served-3");
    third.mutable_stopping()->set_max_new_tokens(3);
    auto reader = stub->Generate(&context, third);
    while (reader->Read(&response)) {
    }
    third_status = reader->Finish();
  } while (!third_status.ok() && absl::Now() < deadline);
  EXPECT_TRUE(third_status.ok()) << third_status.error_message();

  // One log line per request, with its outcome and token counts.
  const std::string log = stack.gateway_process().Log();
  EXPECT_THAT(log, HasSubstr("request id=busy-1 status=CANCELLED"));
  EXPECT_THAT(log, HasSubstr("request id=refused-2 status=RESOURCE_EXHAUSTED"));
  EXPECT_THAT(log, HasSubstr("request id=served-3 status=OK prompt_tokens=6 "
                             "cached_tokens=0 new_tokens=3"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("keeps the only slot busy")))
      << "prompts must never be logged";
}

}  // namespace
}  // namespace longctx
