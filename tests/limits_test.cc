// Limits with real processes: concurrent requests beyond
// --max_concurrent_requests are refused with RESOURCE_EXHAUSTED, nothing is
// lost, and every request leaves one structured log line; a request that
// waits at the worker beyond --max_queue_wait fails naming it; messages
// beyond the gateway's --max_message_bytes are refused; --log_level=warning
// keeps only the lines of failed requests.
#include <string>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "tests/testing/generate.h"
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

// Reads a Generate stream to its end and returns its status.
grpc::Status Drain(v1::LongContext::Stub& stub, const v1::GenerateRequest& r) {
  return testing::Generate(stub, r).status;
}

TEST(LimitsTest, QueueWaitMessageSizeAndLogLevelLimits) {
  testing::LocalStack stack;
  testing::StackOptions options;
  options.worker_flags = {"--max_batch=1", "--max_queue_wait=200ms"};
  options.gateway_flags = {"--max_text_bytes=1000000",
                           "--max_message_bytes=1048576",
                           "--log_level=warning"};
  absl::Status started = stack.Start(options);
  ASSERT_TRUE(started.ok()) << started;
  auto stub = v1::LongContext::NewStub(grpc::CreateChannel(
      stack.gateway().address(), grpc::InsecureChannelCredentials()));

  // One request holds the worker's only batch slot...
  v1::GenerateRequest long_request;
  long_request.set_text("a request that keeps the batch busy");
  long_request.set_request_id("busy-1");
  long_request.mutable_stopping()->set_max_new_tokens(4000);
  long_request.mutable_stopping()->set_ignore_eos(true);
  grpc::ClientContext busy_context;
  auto busy = stub->Generate(&busy_context, long_request);
  v1::GenerateResponse response;
  ASSERT_TRUE(busy->Read(&response));  // It is running.

  // ...so the next one waits in the worker's queue until --max_queue_wait.
  v1::GenerateRequest waiting;
  waiting.set_text("second");
  waiting.set_request_id("waits-2");
  waiting.mutable_stopping()->set_max_new_tokens(3);
  grpc::Status status = Drain(*stub, waiting);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_queue_wait"));
  EXPECT_THAT(status.error_message(), HasSubstr("the limit is 200ms"));

  // Text over --max_text_bytes is refused by the gateway, a message over
  // --max_message_bytes by gRPC, both while the busy request runs on.
  v1::TokenizeRequest tokenize;
  v1::TokenizeResponse tokens;
  tokenize.set_text(std::string(1000001, 'x'));
  {
    grpc::ClientContext context;
    status = stub->Tokenize(&context, tokenize, &tokens);
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_text_bytes"));
  tokenize.set_text(std::string(2 << 20, 'x'));
  {
    grpc::ClientContext context;
    status = stub->Tokenize(&context, tokenize, &tokens);
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  ASSERT_TRUE(busy->Read(&response));

  busy_context.TryCancel();
  while (busy->Read(&response)) {
  }
  busy->Finish();
  // The slot frees once the cancellation reaches the worker.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  v1::GenerateRequest served = waiting;
  served.set_request_id("served-3");
  do {
    status = Drain(*stub, served);
  } while (!status.ok() && absl::Now() < deadline);
  EXPECT_TRUE(status.ok()) << status.error_message();

  // --log_level=warning: failed requests are logged, successful ones not.
  const std::string log = stack.gateway_process().Log();
  EXPECT_THAT(log, HasSubstr("request id=waits-2 status=RESOURCE_EXHAUSTED"));
  EXPECT_THAT(log, HasSubstr("request id=busy-1 status=CANCELLED"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("request id=served-3 status=OK")));
  EXPECT_THAT(log, ::testing::Not(HasSubstr(" INFO ")));
}

}  // namespace
}  // namespace longctx
