#include "services/rendezvous/rendezvous_service_impl.h"

#include <thread>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
#include "services/common/testing/temp_dir.h"
#include "services/common/testing/test_pki.h"
#include "services/common/tls.h"
#include "services/rendezvous/testing/in_process_rendezvous.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

class RendezvousServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rendezvous_ = testing::InProcessRendezvous::Start();
    stub_ = rendezvous::v1::Rendezvous::NewStub(grpc::CreateChannel(
        rendezvous_->address(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Set(const std::string& key, const std::string& value) {
    grpc::ClientContext context;
    rendezvous::v1::SetRequest request;
    request.set_key(key);
    request.set_value(value);
    rendezvous::v1::SetResponse response;
    return stub_->Set(&context, request, &response);
  }

  grpc::Status Get(const std::vector<std::string>& keys, int64_t wait_ms,
                   std::vector<std::string>* values) {
    grpc::ClientContext context;
    rendezvous::v1::GetRequest request;
    for (const auto& key : keys) request.add_keys(key);
    request.set_wait_ms(wait_ms);
    rendezvous::v1::GetResponse response;
    grpc::Status status = stub_->Get(&context, request, &response);
    values->assign(response.values().begin(), response.values().end());
    return status;
  }

  std::unique_ptr<testing::InProcessRendezvous> rendezvous_;
  std::unique_ptr<rendezvous::v1::Rendezvous::Stub> stub_;
};

TEST_F(RendezvousServiceTest, GetReturnsValuesInKeyOrder) {
  ASSERT_TRUE(Set("a", "1").ok());
  ASSERT_TRUE(Set("b", std::string("\0x", 2)).ok());
  std::vector<std::string> values;
  ASSERT_TRUE(Get({"b", "a"}, 0, &values).ok());
  EXPECT_THAT(values, ::testing::ElementsAre(std::string("\0x", 2), "1"));
}

TEST_F(RendezvousServiceTest, GetWaitsForALaterSet) {
  std::thread late([this] {
    absl::SleepFor(absl::Milliseconds(300));
    ASSERT_TRUE(Set("late", "here").ok());
  });
  std::vector<std::string> values;
  grpc::Status status = Get({"late"}, 10000, &values);
  late.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(values, ::testing::ElementsAre("here"));
}

TEST_F(RendezvousServiceTest, TimeoutNamesTheMissingKeys) {
  ASSERT_TRUE(Set("g/0", "x").ok());
  std::vector<std::string> values;
  grpc::Status status = Get({"g/0", "g/1", "g/2"}, 200, &values);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status.error_message(), HasSubstr("g/1, g/2"));
}

TEST_F(RendezvousServiceTest, RejectsBadKeysAndValues) {
  EXPECT_EQ(Set("", "x").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Set(std::string(257, 'k'), "x").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Set("k", std::string((64 << 10) + 1, 'v')).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// The gateway's setup: TLS with optional client certificates, Rendezvous
// only for peers that present one.
TEST(RendezvousAuthTest, NeedsAVerifiedClientCertificate) {
  auto pki = testing::MakeTestPki(testing::NewTempDir("pki"));
  ASSERT_TRUE(pki.ok()) << pki.status();
  ServerTlsOptions tls;
  tls.cert_file = pki->cert;
  tls.key_file = pki->key;
  tls.client_ca_file = pki->ca_cert;
  tls.require_client_certificate = false;
  auto credentials = MakeServerCredentials(tls);
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  RendezvousServiceImpl service(/*require_client_certificate=*/true);
  GrpcServerOptions options;
  options.listen = {"127.0.0.1", 0};
  options.credentials = *credentials;
  auto server = GrpcServer::Start(options, {&service});
  ASSERT_TRUE(server.ok()) << server.status();

  auto set = [&](const std::string& cert, const std::string& key) {
    ChannelTlsOptions client;
    client.ca_file = pki->ca_cert;
    client.cert_file = cert;
    client.key_file = key;
    auto security = ChannelSecurity::FromOptions(client);
    EXPECT_TRUE(security.ok()) << security.status();
    auto stub = rendezvous::v1::Rendezvous::NewStub(
        security->NewChannel("127.0.0.1:" + std::to_string((*server)->port())));
    grpc::ClientContext context;
    rendezvous::v1::SetRequest request;
    request.set_key("k");
    rendezvous::v1::SetResponse response;
    return stub->Set(&context, request, &response);
  };
  grpc::Status anonymous = set("", "");
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(anonymous.error_message(), HasSubstr("client certificate"));
  EXPECT_TRUE(set(pki->cert, pki->key).ok());
}

}  // namespace
}  // namespace longctx
