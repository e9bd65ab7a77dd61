// Security end to end, set up as the Kubernetes manifests are: the gateway
// serves a public certificate and wants bearer tokens; the services talk to
// each other with mutual TLS, every one presenting one internal certificate
// issued for the name "longctx-internal", and send the internal token on every
// call, the gateway's internal listener included when a worker calls its
// Rendezvous (a group of two ranks forms through it). All with certificates
// this test makes itself (openssl) in its temporary folder.
#include <fstream>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "proto/memory_store.grpc.pb.h"
#include "proto/rendezvous.grpc.pb.h"
#include "proto/worker.grpc.pb.h"
#include "services/common/testing/temp_dir.h"
#include "services/common/testing/test_pki.h"
#include "services/common/tls.h"
#include "tests/testing/generate.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using testing::MetricSum;

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = testing::NewTempDir("pki");
    auto pki = testing::MakeTestPki(dir);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new testing::TestPki(*pki);
    // A token that cannot occur in a log by chance.
    absl::BitGen random;
    token_ = new std::string(absl::StrFormat("tok-%016x%016x",
                                             absl::Uniform<uint64_t>(random),
                                             absl::Uniform<uint64_t>(random)));
    internal_token_ = new std::string(
        absl::StrFormat("internal-%016x%016x", absl::Uniform<uint64_t>(random),
                        absl::Uniform<uint64_t>(random)));
    const std::string internal_token_file = dir + "/internal-token";
    std::ofstream(internal_token_file) << *internal_token_ << "\n";
    tokens_file_ = new std::string(dir + "/tokens");
    std::ofstream(*tokens_file_)
        << "# clients of the security test\n"
        << "another-valid-token-0001\n"
        << *token_ << "\n"
        << "# tenants: acme and initech share one cache namespace\n"
        << "tenant-token-acme-0001 acme\n"
        << "tenant-token-globex-0001 globex\n"
        << "tenant-token-initech-0001 initech cache_namespace=acme\n";

    const std::vector<std::string> server_tls = {
        "--tls_cert=" + pki_->internal_cert, "--tls_key=" + pki_->internal_key,
        "--tls_client_ca=" + pki_->ca_cert};
    const std::vector<std::string> internal_tls = {
        "--internal_tls_ca=" + pki_->ca_cert,
        "--internal_tls_cert=" + pki_->internal_cert,
        "--internal_tls_key=" + pki_->internal_key,
        "--internal_tls_server_name=longctx-internal",
        "--internal_token_file=" + internal_token_file};
    testing::StackOptions options;
    options.num_workers = 2;
    options.group_size = 2;
    options.store_flags = server_tls;
    options.store_flags.push_back("--internal_token_file=" +
                                  internal_token_file);
    health_port_ = testing::FreePort();
    options.store_flags.push_back(
        absl::StrCat("--health_address=127.0.0.1:", health_port_));
    options.worker_flags = server_tls;
    options.worker_flags.insert(options.worker_flags.end(),
                                internal_tls.begin(), internal_tls.end());
    // The public certificate comes from another CA than the internal one;
    // the internal listener presents the internal certificate.
    options.gateway_flags = {"--tls_cert=" + pki_->other_cert,
                             "--tls_key=" + pki_->other_key};
    options.gateway_flags.insert(options.gateway_flags.end(),
                                 internal_tls.begin(), internal_tls.end());
    options.gateway_flags.push_back("--auth_tokens_file=" + *tokens_file_);
    // The OpenAI-compatible HTTP API, HTTPS with the public certificate.
    http_port_ = testing::FreePort();
    options.gateway_flags.push_back(
        absl::StrCat("--http_address=127.0.0.1:", http_port_));
    // Debug lines too must never carry a token.
    options.gateway_flags.push_back("--log_level=debug");
    options.security = Internal();
    options.gateway_security = Public();
    stack_ = new testing::LocalStack();
    absl::Status status = stack_->Start(options);
    ASSERT_TRUE(status.ok()) << status;
  }
  static void TearDownTestSuite() {
    delete stack_;
    delete pki_;
    delete token_;
    delete internal_token_;
    delete tokens_file_;
  }

  void SetUp() override { ASSERT_NE(stack_, nullptr); }

  static ChannelSecurity Tls(const std::string& ca, const std::string& cert,
                             const std::string& key,
                             const std::string& server_name = "") {
    ChannelTlsOptions options;
    options.ca_file = ca;
    options.cert_file = cert;
    options.key_file = key;
    options.server_name = server_name;
    auto security = ChannelSecurity::FromOptions(options);
    EXPECT_TRUE(security.ok()) << security.status();
    return security.ok() ? *security : ChannelSecurity();
  }
  // What the services use between themselves.
  static ChannelSecurity Internal() {
    return InternalWithoutToken().WithBearerToken(*internal_token_);
  }
  // The internal certificate alone, as a caller who stole it but not the
  // internal token.
  static ChannelSecurity InternalWithoutToken() {
    return Tls(pki_->ca_cert, pki_->internal_cert, pki_->internal_key,
               "longctx-internal");
  }
  // A public client: trusts the gateway's public CA, has no certificate.
  static ChannelSecurity Public() { return Tls(pki_->other_ca_cert, "", ""); }

  using Result = testing::GenerateResult;

  // Generate through `security`, with `authorization` metadata unless empty.
  static Result Generate(const ChannelSecurity& security,
                         const std::string& authorization,
                         const std::string& text = "a prompt over TLS") {
    auto stub = v1::LongContext::NewStub(
        security.NewChannel(stack_->gateway().address()));
    grpc::ClientContext context;
    if (!authorization.empty()) {
      context.AddMetadata("authorization", authorization);
    }
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_stopping()->set_max_new_tokens(4);
    request.mutable_stopping()->set_ignore_eos(true);
    return testing::Generate(*stub, request, absl::Seconds(60), &context);
  }

  static std::string Bearer() { return "Bearer " + *token_; }

  static std::string Metrics(const testing::Endpoint& e) {
    auto page = testing::HttpGet(e.metrics_port, "/metrics");
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? *page : "";
  }

  static testing::TestPki* pki_;
  static std::string* token_;
  static std::string* internal_token_;
  static std::string* tokens_file_;
  static int health_port_;
  static int http_port_;
  static testing::LocalStack* stack_;
};

testing::TestPki* SecurityTest::pki_ = nullptr;
std::string* SecurityTest::token_ = nullptr;
std::string* SecurityTest::internal_token_ = nullptr;
std::string* SecurityTest::tokens_file_ = nullptr;
int SecurityTest::health_port_ = 0;
int SecurityTest::http_port_ = 0;

// The HTTP API serves HTTPS with the gateway's certificate and asks for the
// same bearer tokens; it does not answer plaintext.
TEST_F(SecurityTest, TheHttpApiIsHttpsWithTheSameTokens) {
  const auto curl = [&](const std::string& scheme, const std::string& token) {
    std::vector<std::string> argv = {
        "/usr/bin/curl",     "-sS", "--max-time",    "20", "--cacert",
        pki_->other_ca_cert, "-w",  "\n%{http_code}"};
    if (!token.empty()) {
      argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token});
    }
    argv.push_back(
        absl::StrCat(scheme, "://127.0.0.1:", http_port_, "/v1/models"));
    std::string output;
    absl::StatusOr<int> rc = testing::RunCommand(argv, "", &output);
    return std::make_pair(rc.ok() ? *rc : -1, output);
  };
  auto [rc, output] = curl("https", *token_);
  EXPECT_EQ(rc, 0) << output;
  EXPECT_THAT(output, HasSubstr("\n200"));
  std::tie(rc, output) = curl("https", "");
  EXPECT_THAT(output, HasSubstr("\n401"));
  std::tie(rc, output) = curl("http", *token_);
  EXPECT_THAT(output, ::testing::Not(HasSubstr("\n200")));
}
testing::LocalStack* SecurityTest::stack_ = nullptr;

TEST_F(SecurityTest, GenerateWithAValidTokenOverTlsWorks) {
  Result r = Generate(Public(), Bearer());
  ASSERT_TRUE(r.status.ok()) << r.status.error_message() << stack_->Logs();
  EXPECT_EQ(r.tokens.size(), 4u);
  // Every token of the file counts, and the scheme's case does not matter.
  r = Generate(Public(), "bearer another-valid-token-0001");
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
}

// A tenant's cached prompt blocks are its namespace's alone: another tenant
// sending the same document gets no cached token (so it cannot tell that the
// document was sent), while the first tenant, and a tenant configured to
// share its namespace, are served from the cache.
TEST_F(SecurityTest, ATenantCannotDetectAnotherTenantsPrefix) {
  absl::BitGen random;
  std::string document = "The confidential merger memo ";
  for (int i = 0; i < 120; ++i) {
    absl::StrAppend(&document, absl::Uniform<uint32_t>(random), " ");
  }
  auto cached = [&](const std::string& token) {
    Result result = Generate(Public(), "Bearer " + token, document);
    EXPECT_TRUE(result.status.ok()) << result.status.error_message();
    return result.last.usage().cached_tokens();
  };
  EXPECT_EQ(cached("tenant-token-acme-0001"), 0);
  EXPECT_EQ(cached("tenant-token-globex-0001"), 0);  // Same text, other tenant.
  EXPECT_GT(cached("tenant-token-acme-0001"), 0);    // The feature works.
  EXPECT_GT(cached("tenant-token-initech-0001"), 0);  // Shares acme's.
  EXPECT_EQ(cached(*token_), 0);  // A token alone is a tenant of its own.
}

TEST_F(SecurityTest, TokenizeAndGetModelInfoNeedTheTokenToo) {
  auto stub = v1::LongContext::NewStub(
      Public().NewChannel(stack_->gateway().address()));
  for (const std::string& authorization : {std::string(), Bearer()}) {
    grpc::ClientContext tokenize_context, info_context;
    if (!authorization.empty()) {
      tokenize_context.AddMetadata("authorization", authorization);
      info_context.AddMetadata("authorization", authorization);
    }
    v1::TokenizeRequest request;
    request.set_text("hello");
    v1::TokenizeResponse tokens;
    grpc::Status tokenize = stub->Tokenize(&tokenize_context, request, &tokens);
    v1::ModelInfo info;
    grpc::Status model =
        stub->GetModelInfo(&info_context, v1::GetModelInfoRequest(), &info);
    if (authorization.empty()) {
      EXPECT_EQ(tokenize.error_code(), grpc::StatusCode::UNAUTHENTICATED);
      EXPECT_EQ(model.error_code(), grpc::StatusCode::UNAUTHENTICATED);
      EXPECT_EQ(tokens.token_ids_size(), 0);
      EXPECT_TRUE(info.name().empty());
    } else {
      EXPECT_TRUE(tokenize.ok()) << tokenize.error_message();
      EXPECT_TRUE(model.ok()) << model.error_message();
      EXPECT_GT(tokens.token_ids_size(), 0);
    }
  }
}

TEST_F(SecurityTest, MissingOrWrongTokensAreRefusedBeforeAnyWork) {
  const std::string worker_before = Metrics(stack_->workers()[0]);
  const std::string gateway_before = Metrics(stack_->gateway());
  const std::string wrong = "tok-wrong-" + token_->substr(4);
  for (const std::string& authorization :
       {std::string(), "Bearer " + wrong, "Bearer " + token_->substr(0, 20),
        "Basic " + *token_, *token_}) {
    Result r = Generate(Public(), authorization);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << authorization << ": " << r.status.error_message();
    EXPECT_TRUE(r.tokens.empty());
    EXPECT_THAT(r.status.error_message(), Not(HasSubstr(wrong)));
    EXPECT_THAT(r.status.error_message(), Not(HasSubstr(*token_)));
  }
  const std::string worker_after = Metrics(stack_->workers()[0]);
  const std::string gateway_after = Metrics(stack_->gateway());
  // No request reached the worker's engine...
  for (const char* metric :
       {"longctx_queue_seconds_count", "longctx_prefill_tokens_total",
        "longctx_decode_tokens_total"}) {
    EXPECT_EQ(MetricSum(worker_after, metric), MetricSum(worker_before, metric))
        << metric;
  }
  // ...nor counted as a request of the gateway; each refusal was counted.
  EXPECT_EQ(MetricSum(gateway_after, "longctx_requests_total"),
            MetricSum(gateway_before, "longctx_requests_total"));
  EXPECT_EQ(
      MetricSum(gateway_after, "longctx_unauthenticated_calls_total") -
          MetricSum(gateway_before, "longctx_unauthenticated_calls_total"),
      5);
}

TEST_F(SecurityTest, PlaintextAndUntrustingClientsCannotConnect) {
  Result plaintext = Generate(ChannelSecurity(), Bearer());
  EXPECT_EQ(plaintext.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  // A client that does not trust the gateway's CA refuses the handshake.
  Result untrusting = Generate(Tls(pki_->ca_cert, "", ""), Bearer());
  EXPECT_EQ(untrusting.status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SecurityTest, WorkerAndStoreRefuseClientsWithoutATrustedCertificate) {
  auto worker_status = [](const ChannelSecurity& security) {
    auto stub = worker::v1::Worker::NewStub(
        security.NewChannel(stack_->workers()[0].address()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    worker::v1::WorkerStatus status;
    return stub->GetStatus(&context, worker::v1::GetStatusRequest(), &status)
        .error_code();
  };
  auto store_stats = [](const ChannelSecurity& security) {
    auto stub = memory_store::v1::MemoryStore::NewStub(
        security.NewChannel(stack_->store().address()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    memory_store::v1::StoreStats stats;
    return stub->GetStats(&context, memory_store::v1::GetStatsRequest(), &stats)
        .error_code();
  };
  const ChannelSecurity no_certificate =
      Tls(pki_->ca_cert, "", "", "longctx-internal");
  const ChannelSecurity foreign_certificate =
      Tls(pki_->ca_cert, pki_->other_cert, pki_->other_key, "longctx-internal");
  EXPECT_EQ(worker_status(no_certificate), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(worker_status(foreign_certificate), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(worker_status(ChannelSecurity()), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(worker_status(InternalWithoutToken()),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(worker_status(Internal()), grpc::StatusCode::OK);
  EXPECT_EQ(store_stats(no_certificate), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(store_stats(foreign_certificate), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(store_stats(InternalWithoutToken()),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(store_stats(Internal()), grpc::StatusCode::OK);
}

// Rendezvous is not on the public port at all, and the internal listener
// wants both the internal certificate and the internal token.
TEST_F(SecurityTest, RendezvousIsInternalAndNeedsCredentials) {
  auto set = [](const std::string& address, const ChannelSecurity& security) {
    auto stub =
        rendezvous::v1::Rendezvous::NewStub(security.NewChannel(address));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    rendezvous::v1::SetRequest request;
    request.set_key("security-test/key");
    request.set_value("v");
    rendezvous::v1::SetResponse response;
    return stub->Set(&context, request, &response);
  };
  const std::string public_address = stack_->gateway().address();
  const std::string internal_address = stack_->gateway().internal_address();
  EXPECT_EQ(set(public_address, Public()).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(set(internal_address, ChannelSecurity()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(
      set(internal_address, Tls(pki_->ca_cert, "", "", "longctx-internal"))
          .error_code(),
      grpc::StatusCode::UNAVAILABLE);
  grpc::Status no_token = set(internal_address, InternalWithoutToken());
  EXPECT_EQ(no_token.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(no_token.error_message(), HasSubstr("internal token"));
  EXPECT_THAT(no_token.error_message(), Not(HasSubstr(*internal_token_)));
  grpc::Status member = set(internal_address, Internal());
  EXPECT_TRUE(member.ok()) << member.error_message();
}

TEST_F(SecurityTest, HealthStaysOpenForProbes) {
  // Health on the TLS port needs TLS, but no token...
  auto gateway =
      testing::HealthStatus(stack_->gateway().address(), "", Public());
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  EXPECT_EQ(*gateway, "SERVING");
  // ...and --health_address answers in plaintext.
  auto store = testing::HealthStatus(absl::StrCat("127.0.0.1:", health_port_),
                                     "", ChannelSecurity());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*store, "SERVING");
  EXPECT_FALSE(
      testing::HealthStatus(stack_->store().address(), "", ChannelSecurity())
          .ok());
  // The plaintext port serves health (and reflection) only.
  auto services =
      testing::ListServices(absl::StrCat("127.0.0.1:", health_port_));
  ASSERT_TRUE(services.ok()) << services.status();
  EXPECT_THAT(*services, ::testing::Contains("grpc.health.v1.Health"));
  EXPECT_THAT(*services,
              Not(::testing::Contains("longctx.memory_store.v1.MemoryStore")));
}

TEST_F(SecurityTest, TheClientsSpeakTlsAndSendTokens) {
  std::string output;
  auto rc = testing::RunCommand(
      {testing::RunfilePath("tools/clients/cpp/generate"),
       "--address=" + stack_->gateway().address(),
       "--tls_ca=" + pki_->other_ca_cert, "--token_file=" + *tokens_file_,
       "--max_new_tokens=3", "--ignore_eos"},
      "prompt from the C++ client", &output);
  ASSERT_TRUE(rc.ok());
  // The first token of the file is another-valid-token-0001.
  EXPECT_EQ(*rc, 0) << output;
  EXPECT_THAT(output, HasSubstr("generated 3"));

  rc = testing::RunCommand(
      {testing::RunfilePath("tools/clients/cpp/generate"),
       "--address=" + stack_->gateway().address(),
       "--tls_ca=" + pki_->other_ca_cert, "--max_new_tokens=3"},
      "no token", &output);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 1) << output;
  EXPECT_THAT(output, HasSubstr("UNAUTHENTICATED"));

  rc = testing::RunCommand(
      {"/usr/bin/python3",
       testing::RunfilePath("tools/clients/python/longctx_client.py"),
       "--address=" + stack_->gateway().address(),
       "--tls-ca=" + pki_->other_ca_cert, "--token=" + *token_,
       "--max-new-tokens=5", "--ignore-eos", "a prompt from python"},
      "", &output);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 0) << output;
  EXPECT_THAT(output, HasSubstr("generated 5"));
}

TEST_F(SecurityTest, NoTokenEverReachesALog) {
  // Valid and invalid tokens, on every method, then every log of the stack.
  const std::string wrong = "tok-never-valid-" + token_->substr(4);
  ASSERT_TRUE(Generate(Public(), Bearer()).status.ok());
  ASSERT_FALSE(Generate(Public(), "Bearer " + wrong).status.ok());
  const std::string logs = stack_->Logs();
  EXPECT_THAT(logs, HasSubstr("refused Generate from"));
  EXPECT_THAT(logs, Not(HasSubstr(*token_)));
  EXPECT_THAT(logs, Not(HasSubstr(*internal_token_)));
  EXPECT_THAT(logs, Not(HasSubstr(wrong)));
  EXPECT_THAT(logs, Not(HasSubstr("another-valid-token-0001")));
  EXPECT_THAT(logs, Not(HasSubstr("-----BEGIN")));
}

TEST(SecurityStartupTest, BadSecurityFlagsExitWithCode2NamingTheFlag) {
  const std::string dir = testing::NewTempDir("startup");
  const std::string empty_tokens = dir + "/empty-tokens";
  std::ofstream(empty_tokens) << "# nothing yet\n";
  const std::string gateway = testing::RunfilePath("services/gateway/gateway");
  const std::string store = testing::RunfilePath("memory_store/memory_store");
  struct Case {
    std::vector<std::string> argv;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{store, "--data_dir=" + dir + "/s1", "--tls_cert=" + dir + "/no",
             "--tls_key=" + dir + "/no"},
            "--tls_cert=" + dir + "/no cannot be read"},
           {{store, "--data_dir=" + dir + "/s2", "--tls_cert=" + empty_tokens,
             "--tls_key=" + empty_tokens},
            "holds no PEM block"},
           {{store, "--data_dir=" + dir + "/s3", "--tls_client_ca=/etc/hosts"},
            "--tls_client_ca needs --tls_cert and --tls_key"},
           {{gateway, "--model=" + dir, "--workers=127.0.0.1:1",
             "--auth_tokens_file=" + empty_tokens},
            "--auth_tokens_file has no token"},
           {{gateway, "--model=" + dir, "--workers=127.0.0.1:1",
             "--internal_tls_cert=/etc/hosts"},
            "need --internal_tls_ca"}}) {
    std::string output;
    auto rc = testing::RunCommand(c.argv, "", &output);
    ASSERT_TRUE(rc.ok());
    EXPECT_EQ(*rc, 2) << output;
    EXPECT_THAT(output, HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace longctx
