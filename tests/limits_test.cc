// Limits with real processes: concurrent requests beyond
// --max_concurrent_requests are refused with RESOURCE_EXHAUSTED, nothing is
// lost, and every request leaves one structured log line; a request that
// waits at the worker beyond --max_queue_wait fails naming it; messages
// beyond the gateway's --max_message_bytes are refused; --log_level=warning
// keeps only the lines of failed requests; a gzip-compressed request that
// expands past the receive limit is refused while the gateway's memory stays
// bounded; one tenant cannot take another's slots.
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "services/common/testing/temp_dir.h"
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
    // Three tokens whatever is sampled: the random model may sample its end
    // of sequence early (the log line below counts 3).
    third.mutable_stopping()->set_ignore_eos(true);
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

// The peak resident memory of process `pid` so far (VmHWM), in bytes.
int64_t PeakRss(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) != 0) continue;
    std::vector<std::string> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    int64_t kib = 0;
    if (fields.size() >= 2 && absl::SimpleAtoi(fields[1], &kib)) {
      return kib * 1024;
    }
  }
  return -1;
}

// 17 MiB of token ids compress to a few kilobytes with gzip. gRPC checks the
// receive limit (which follows --max_prompt_tokens) after decompression and
// before the message is parsed, so such requests are refused with
// RESOURCE_EXHAUSTED and the gateway's peak memory barely moves. (Before the
// limit followed the prompt limit, four such calls raised it by 450 MB.)
TEST(LimitsTest, ACompressedHugeRequestIsRefusedWithBoundedMemory) {
  testing::LocalStack stack;
  absl::Status started = stack.Start(testing::StackOptions());
  ASSERT_TRUE(started.ok()) << started;
  auto stub = v1::LongContext::NewStub(grpc::CreateChannel(
      stack.gateway().address(), grpc::InsecureChannelCredentials()));
  v1::GenerateRequest small;
  small.set_text("warm up");
  small.mutable_stopping()->set_max_new_tokens(2);
  ASSERT_TRUE(testing::Generate(*stub, small).status.ok());
  const pid_t gateway = stack.gateway_process().pid();
  const int64_t before = PeakRss(gateway);
  ASSERT_GT(before, 0);

  v1::GenerateRequest huge;
  huge.mutable_token_ids()->mutable_ids()->Resize(17 << 20, 1);
  huge.mutable_stopping()->set_max_new_tokens(1);
  for (int i = 0; i < 4; ++i) {
    grpc::ClientContext context;
    context.set_compression_algorithm(GRPC_COMPRESS_GZIP);
    testing::GenerateResult r =
        testing::Generate(*stub, huge, absl::Seconds(60), &context);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << r.status.error_message();
  }
  const int64_t after = PeakRss(gateway);
  std::cout << "gateway peak RSS: " << before / (1 << 20) << " MiB before, "
            << after / (1 << 20) << " MiB after 4 compressed 17 MiB requests"
            << std::endl;
  EXPECT_LT(after - before, int64_t{64} << 20);
  // The gateway still serves.
  EXPECT_TRUE(testing::Generate(*stub, small).status.ok());
}

// With tenants, --max_concurrent_requests_per_tenant bounds each: a tenant at
// its limit is refused, naming it, while another tenant is served.
TEST(LimitsTest, OneTenantCannotTakeAnothersSlots) {
  testing::LocalStack stack;
  testing::StackOptions options;
  const std::string tokens = testing::NewTempDir("tenants") + "/tokens";
  std::ofstream(tokens) << "token-of-acme-0001 acme\ntoken-of-globex-001 "
                           "globex\n";
  options.gateway_flags = {"--auth_tokens_file=" + tokens,
                           "--max_concurrent_requests_per_tenant=1"};
  absl::Status started = stack.Start(options);
  ASSERT_TRUE(started.ok()) << started;
  auto stub = v1::LongContext::NewStub(grpc::CreateChannel(
      stack.gateway().address(), grpc::InsecureChannelCredentials()));

  v1::GenerateRequest long_request;
  long_request.set_text("acme keeps its only slot busy");
  long_request.mutable_stopping()->set_max_new_tokens(4000);
  long_request.mutable_stopping()->set_ignore_eos(true);
  grpc::ClientContext busy_context;
  busy_context.AddMetadata("authorization", "Bearer token-of-acme-0001");
  auto busy = stub->Generate(&busy_context, long_request);
  v1::GenerateResponse response;
  ASSERT_TRUE(busy->Read(&response));  // It is running.

  v1::GenerateRequest short_request;
  short_request.set_text("short");
  short_request.mutable_stopping()->set_max_new_tokens(2);
  grpc::ClientContext acme_context;
  acme_context.AddMetadata("authorization", "Bearer token-of-acme-0001");
  testing::GenerateResult acme =
      testing::Generate(*stub, short_request, absl::Seconds(60), &acme_context);
  EXPECT_EQ(acme.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(acme.status.error_message(), HasSubstr("tenant acme"));
  grpc::ClientContext globex_context;
  globex_context.AddMetadata("authorization", "Bearer token-of-globex-001");
  testing::GenerateResult globex = testing::Generate(
      *stub, short_request, absl::Seconds(60), &globex_context);
  EXPECT_TRUE(globex.status.ok()) << globex.status.error_message();

  busy_context.TryCancel();
  while (busy->Read(&response)) {
  }
  busy->Finish();
}

// 256 streams whose client never reads take every slot of the gateway
// (--max_concurrent_requests=256) and stall once flow control fills; the
// write timeout cancels them, so a new client is served.
TEST(LimitsTest, UnreadStreamsDoNotLockOutANewClient) {
  testing::LocalStack stack;
  testing::StackOptions options;
  options.gateway_flags = {"--stream_write_timeout=3s"};
  absl::Status started = stack.Start(options);
  ASSERT_TRUE(started.ok()) << started;

  // A client that reads nothing: small flow-control windows that never grow.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8192);
  auto unread_stub = v1::LongContext::NewStub(grpc::CreateCustomChannel(
      stack.gateway().address(), grpc::InsecureChannelCredentials(), args));
  v1::GenerateRequest flood;
  flood.set_text("never read");
  flood.mutable_stopping()->set_max_new_tokens(4096);
  flood.mutable_stopping()->set_ignore_eos(true);
  flood.mutable_logprobs()->set_enabled(true);
  flood.mutable_logprobs()->set_top_logprobs(20);
  constexpr int kStreams = 256;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>>
      readers;
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(unread_stub->Generate(contexts.back().get(), flood));
  }

  // Give the gateway a moment to admit them all.
  absl::SleepFor(absl::Seconds(1));

  // A new client is refused at first (every slot is taken), then served.
  auto stub = v1::LongContext::NewStub(grpc::CreateChannel(
      stack.gateway().address(), grpc::InsecureChannelCredentials()));
  v1::GenerateRequest small;
  small.set_text("a new client");
  small.mutable_stopping()->set_max_new_tokens(2);
  const absl::Time start = absl::Now();
  const absl::Time give_up = start + absl::Seconds(120);
  grpc::Status status;
  int refused = 0;
  do {
    status = testing::Generate(*stub, small, absl::Seconds(60)).status;
    if (!status.ok()) {
      ++refused;
      absl::SleepFor(absl::Milliseconds(250));
    }
  } while (!status.ok() && absl::Now() < give_up);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_GT(refused, 0) << "the unread streams never took every slot";
  std::cout << "new client served after " << absl::Now() - start << " ("
            << refused << " refusals)" << std::endl;
  auto page = testing::HttpGet(stack.gateway().metrics_port, "/metrics");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_GT(testing::MetricSum(*page, "longctx_stalled_streams_total"), 0);

  for (auto& context : contexts) context->TryCancel();
  for (auto& reader : readers) reader->Finish();
}

}  // namespace
}  // namespace longctx
