#include "services/gateway/gateway_service_impl.h"

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
#include "services/common/testing/temp_dir.h"
#include "services/worker/testing/tiny_worker.h"
#include "services/worker/worker_server.h"
#include "tests/testing/generate.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

// The service in front of one worker rank (the tiny model), both in this
// process on loopback ports; the test owns the pool, the router and the
// metrics the service reports to.
class GatewayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = testing::NewTinyModelDir("gateway_service_model");
    auto started = WorkerServer::Start(testing::TinyWorkerOptions(model_dir_));
    ASSERT_TRUE(started.ok()) << started.status();
    worker_ = *std::move(started);
    auto model = GatewayModel::Load(model_dir_, "tiny");
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    WorkerPoolOptions pool;
    pool.workers = {{"127.0.0.1", worker_->grpc_server().port()}};
    pool.probe_interval = absl::Milliseconds(50);
    auto created = WorkerPool::Create(pool);
    ASSERT_TRUE(created.ok()) << created.status();
    pool_ = *std::move(created);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
  }

  // Serves the service with `limits` (and `auth`, when given) and waits until
  // the pool has seen the worker ready.
  void Serve(GatewayLimits limits = GatewayLimits(),
             BearerAuth* auth = nullptr) {
    GatewayRouting routing;
    routing.router = &router_;
    service_ = std::make_unique<GatewayServiceImpl>(
        model_.get(), pool_.get(), limits, registry_, auth, routing);
    GrpcServerOptions options;
    options.listen = {"127.0.0.1", 0};
    server_ = *GrpcServer::Start(options, {service_.get()});
    address_ = "127.0.0.1:" + std::to_string(server_->port());
    stub_ = v1::LongContext::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    for (int i = 0; i < 200 && pool_->fingerprint().empty(); ++i) {
      absl::SleepFor(absl::Milliseconds(25));
    }
    ASSERT_FALSE(pool_->fingerprint().empty()) << "the worker never got ready";
  }

  // The value of counter `name` with `labels` (0 when it has no such series).
  double Counter(const std::string& name,
                 const std::map<std::string, std::string>& labels = {}) {
    for (const auto& family : registry_.Collect()) {
      if (family.name != name) continue;
      for (const auto& metric : family.metric) {
        std::map<std::string, std::string> have;
        for (const auto& label : metric.label) have[label.name] = label.value;
        if (have == labels) return metric.counter.value;
      }
    }
    return 0;
  }

  v1::GenerateRequest Request(const std::string& text, int max_new = 3) {
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_stopping()->set_max_new_tokens(max_new);
    request.mutable_sampling()->set_temperature(0);
    return request;
  }

  std::string model_dir_;
  std::unique_ptr<WorkerServer> worker_;
  std::unique_ptr<GatewayModel> model_;
  std::unique_ptr<WorkerPool> pool_;
  PrefixRouter router_{1024};
  prometheus::Registry registry_;
  std::unique_ptr<GatewayServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::string address_;
  std::unique_ptr<v1::LongContext::Stub> stub_;
};

TEST_F(GatewayServiceTest, GeneratesAndCountsTheRequestItsTokensAndItsRoute) {
  Serve();
  std::string text;
  for (int i = 0; i < 8; ++i) {
    text += "The quick brown fox jumps over the lazy dog. ";
  }
  const testing::GenerateResult first =
      testing::Generate(*stub_, Request(text));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(first.tokens.size(), 3u);
  EXPECT_EQ(first.last.finish_reason(), v1::FINISH_REASON_LENGTH);
  const int prompt_tokens = first.last.usage().prompt_tokens();
  EXPECT_GT(prompt_tokens, 32);
  EXPECT_EQ(Counter("longctx_requests_total", {{"code", "OK"}}), 1);
  EXPECT_EQ(Counter("longctx_prompt_tokens_total"), prompt_tokens);
  EXPECT_EQ(Counter("longctx_generated_tokens_total"), 3);
  EXPECT_EQ(Counter("longctx_prefix_affinity_requests_total"), 0);

  // The same prompt again goes where its prefix was computed, which reuses
  // it.
  const testing::GenerateResult second =
      testing::Generate(*stub_, Request(text));
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_EQ(second.tokens, first.tokens);
  EXPECT_GT(second.last.usage().cached_tokens(), 0);
  EXPECT_EQ(Counter("longctx_prefix_affinity_requests_total"), 1);
  EXPECT_EQ(Counter("longctx_requests_total", {{"code", "OK"}}), 2);
  EXPECT_EQ(service_->in_flight(), 0);
}

TEST_F(GatewayServiceTest, AdmissionRefusesBeyondTheLimitNamingTheFlag) {
  GatewayLimits limits;
  limits.max_concurrent_requests = 0;
  Serve(limits);
  const testing::GenerateResult refused =
      testing::Generate(*stub_, Request("hello"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.status.error_message(),
              HasSubstr("--max_concurrent_requests"));
  EXPECT_EQ(Counter("longctx_requests_total", {{"code", "RESOURCE_EXHAUSTED"}}),
            1);
  EXPECT_EQ(service_->in_flight(), 0);
  // Tokenize is work too, and counts toward the same limit.
  grpc::ClientContext context;
  v1::TokenizeRequest tokenize;
  tokenize.set_text("hello world");
  v1::TokenizeResponse tokens;
  const grpc::Status tokenize_refused =
      stub_->Tokenize(&context, tokenize, &tokens);
  EXPECT_EQ(tokenize_refused.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(tokenize_refused.error_message(),
              HasSubstr("--max_concurrent_requests"));
}

TEST_F(GatewayServiceTest, InvalidRequestsAreRefusedAndCounted) {
  Serve();
  v1::GenerateRequest request = Request("hello");
  request.mutable_sampling()->set_top_p(2);
  const testing::GenerateResult refused = testing::Generate(*stub_, request);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("top_p"));
  EXPECT_EQ(Counter("longctx_requests_total", {{"code", "INVALID_ARGUMENT"}}),
            1);
  EXPECT_EQ(service_->in_flight(), 0);
}

TEST_F(GatewayServiceTest, DrainingRefusesNewRequests) {
  Serve();
  service_->StartDraining();
  const testing::GenerateResult refused =
      testing::Generate(*stub_, Request("hello"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("shutting down"));
}

TEST_F(GatewayServiceTest, TokenizeAndModelInfo) {
  GatewayLimits limits;
  limits.max_text_bytes = 64;
  limits.max_prompt_tokens = 1000;
  Serve(limits);
  grpc::ClientContext context;
  v1::TokenizeRequest tokenize;
  tokenize.set_text("hello world");
  tokenize.set_add_bos(true);
  v1::TokenizeResponse tokens;
  ASSERT_TRUE(stub_->Tokenize(&context, tokenize, &tokens).ok());
  absl::StatusOr<std::vector<int32_t>> plain = model_->Encode("hello world");
  ASSERT_TRUE(plain.ok());
  ASSERT_EQ(tokens.token_ids_size(), static_cast<int>(plain->size()) + 1);
  EXPECT_EQ(tokens.token_ids(0), model_->info().bos_token_id());

  grpc::ClientContext too_long;
  tokenize.set_text(std::string(65, 'x'));
  const grpc::Status refused = stub_->Tokenize(&too_long, tokenize, &tokens);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("--max_text_bytes"));

  grpc::ClientContext info_context;
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&info_context, {}, &info).ok());
  EXPECT_EQ(info.max_prompt_tokens(), 1000);
  EXPECT_EQ(info.num_groups(), 1);
  EXPECT_EQ(info.group_size(), 1);
  EXPECT_EQ(info.fingerprint(), pool_->fingerprint());
  EXPECT_EQ(info.vocab_size(), model_->info().vocab_size());
}

TEST_F(GatewayServiceTest, WithAuthEveryMethodNeedsAValidBearerToken) {
  const std::string tokens = testing::NewTempDir("auth") + "/tokens";
  std::ofstream(tokens) << "s3cret-token\n";
  BearerAuthOptions options;
  options.tokens_file = tokens;
  auto auth = BearerAuth::Create(options);
  ASSERT_TRUE(auth.ok()) << auth.status();
  Serve(GatewayLimits(), auth->get());

  const testing::GenerateResult anonymous =
      testing::Generate(*stub_, Request("hello"));
  EXPECT_EQ(anonymous.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext tokenize_context;
  v1::TokenizeResponse tokenized;
  EXPECT_EQ(stub_->Tokenize(&tokenize_context, {}, &tokenized).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext wrong;
  wrong.AddMetadata("authorization", "Bearer not-the-token");
  v1::ModelInfo info;
  EXPECT_EQ(stub_->GetModelInfo(&wrong, {}, &info).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      Counter("longctx_unauthenticated_calls_total", {{"method", "Generate"}}),
      1);
  EXPECT_EQ(Counter("longctx_unauthenticated_calls_total",
                    {{"method", "GetModelInfo"}}),
            1);

  grpc::ClientContext right;
  right.AddMetadata("authorization", "Bearer s3cret-token");
  EXPECT_TRUE(stub_->GetModelInfo(&right, {}, &info).ok());
  grpc::ClientContext generate_context;
  generate_context.AddMetadata("authorization", "Bearer s3cret-token");
  const testing::GenerateResult allowed = testing::Generate(
      *stub_, Request("hello"), absl::Seconds(60), &generate_context);
  EXPECT_TRUE(allowed.status.ok()) << allowed.status.error_message();
}

}  // namespace
}  // namespace longctx
