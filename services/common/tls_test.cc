#include "services/common/tls.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "services/common/grpc_server.h"
#include "services/common/testing/temp_dir.h"
#include "services/common/testing/test_pki.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// One folder for the test's files.
const std::string& TestDir() {
  static const std::string* dir = new std::string(testing::NewTempDir("tls"));
  return *dir;
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = TestDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// The PKI is made once: openssl takes a moment per key.
const testing::TestPki& Pki() {
  static const testing::TestPki* pki = [] {
    auto made = testing::MakeTestPki(TestDir());
    if (!made.ok()) {
      ADD_FAILURE() << made.status();
      return new testing::TestPki();
    }
    return new testing::TestPki(*made);
  }();
  return *pki;
}

TEST(ReadPemFileTest, NamesTheFlagAndPathOfAMissingFile) {
  auto pem = ReadPemFile("/nonexistent/cert.pem", "--tls_cert", "CERTIFICATE");
  ASSERT_FALSE(pem.ok());
  EXPECT_EQ(pem.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(pem.status().message(),
              HasSubstr("--tls_cert=/nonexistent/cert.pem cannot be read"));
}

TEST(ReadPemFileTest, RejectsAFileWithoutTheBlockAndNeverQuotesIt) {
  const std::string path = WriteFile("not-pem", "s3cr3t-not-a-certificate\n");
  auto pem = ReadPemFile(path, "--tls_key", "PRIVATE KEY");
  ASSERT_FALSE(pem.ok());
  EXPECT_EQ(pem.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pem.status().message(), HasSubstr("--tls_key="));
  EXPECT_THAT(pem.status().message(), HasSubstr("no PEM block"));
  EXPECT_THAT(pem.status().message(), Not(HasSubstr("s3cr3t")));
}

TEST(ReadPemFileTest, TellsACertificateFromAKey) {
  auto pem = ReadPemFile(Pki().cert, "--tls_key", "PRIVATE KEY");
  EXPECT_EQ(pem.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ReadPemFile(Pki().key, "--tls_key", "PRIVATE KEY").ok());
  EXPECT_TRUE(ReadPemFile(Pki().cert, "--tls_cert", "CERTIFICATE").ok());
}

TEST(ReadPemFileTest, RejectsAnEncryptedKey) {
  const std::string path =
      WriteFile("encrypted.key",
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
                "-----END ENCRYPTED PRIVATE KEY-----\n");
  auto pem = ReadPemFile(path, "--tls_key", "PRIVATE KEY");
  ASSERT_FALSE(pem.ok());
  EXPECT_THAT(pem.status().message(), HasSubstr("encrypted"));
}

TEST(MakeServerCredentialsTest, PlaintextWithoutFiles) {
  EXPECT_FALSE(ServerUsesTls(ServerTlsOptions()));
  EXPECT_TRUE(MakeServerCredentials(ServerTlsOptions()).ok());
}

TEST(MakeServerCredentialsTest, CertificateAndKeyGoTogether) {
  ServerTlsOptions options;
  options.cert_file = Pki().cert;
  auto credentials = MakeServerCredentials(options);
  ASSERT_FALSE(credentials.ok());
  EXPECT_THAT(credentials.status().message(), HasSubstr("--tls_key"));
  options = ServerTlsOptions();
  options.client_ca_file = Pki().ca_cert;
  credentials = MakeServerCredentials(options);
  ASSERT_FALSE(credentials.ok());
  EXPECT_THAT(credentials.status().message(),
              HasSubstr("--tls_client_ca needs --tls_cert and --tls_key"));
}

TEST(ChannelSecurityTest, ErrorsNameTheFlagsOfTheirPrefix) {
  ChannelTlsOptions options;
  options.ca_file = Pki().ca_cert;
  options.cert_file = Pki().cert;
  options.flag_prefix = "--internal_tls_";
  auto security = ChannelSecurity::FromOptions(options);
  ASSERT_FALSE(security.ok());
  EXPECT_THAT(security.status().message(),
              HasSubstr("--internal_tls_cert and --internal_tls_key"));
  options.key_file = "/nonexistent.key";
  security = ChannelSecurity::FromOptions(options);
  ASSERT_FALSE(security.ok());
  EXPECT_THAT(security.status().message(),
              HasSubstr("--internal_tls_key=/nonexistent.key"));
}

TEST(ChannelSecurityTest, DefaultIsPlaintext) {
  EXPECT_FALSE(ChannelSecurity().tls());
  auto security = ChannelSecurity::FromOptions(ChannelTlsOptions());
  ASSERT_TRUE(security.ok());
  EXPECT_FALSE(security->tls());
}

// A server with mutual TLS (or optional client certificates) and a plaintext
// health port, probed with grpc.health.v1 Check.
class TlsServerTest : public ::testing::Test {
 protected:
  void Start(bool require_client_certificate) {
    ServerTlsOptions tls;
    tls.cert_file = Pki().cert;
    tls.key_file = Pki().key;
    tls.client_ca_file = Pki().ca_cert;
    tls.require_client_certificate = require_client_certificate;
    auto credentials = MakeServerCredentials(tls);
    ASSERT_TRUE(credentials.ok()) << credentials.status();
    GrpcServerOptions options;
    options.listen = {"127.0.0.1", 0};
    options.health_listen = HostPort{"127.0.0.1", 0};
    options.credentials = *credentials;
    auto server = GrpcServer::Start(options, {});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    server_->SetServing(true);
  }

  // Check's status through a channel made by `security` to `host`.
  grpc::Status Check(const ChannelSecurity& security,
                     const std::string& host = "127.0.0.1", int port = 0) {
    auto stub = grpc::health::v1::Health::NewStub(security.NewChannel(
        host + ":" + std::to_string(port != 0 ? port : server_->port())));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = stub->Check(&context, request, &response);
    if (status.ok()) last_answer_ = response.status();
    return status;
  }

  static ChannelSecurity Client(const std::string& ca, const std::string& cert,
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

  std::unique_ptr<GrpcServer> server_;
  grpc::health::v1::HealthCheckResponse::ServingStatus last_answer_ =
      grpc::health::v1::HealthCheckResponse::UNKNOWN;
};

TEST_F(TlsServerTest, MutualTlsAcceptsOnlyClientsWithATrustedCertificate) {
  Start(/*require_client_certificate=*/true);
  const testing::TestPki& pki = Pki();
  EXPECT_TRUE(Check(Client(pki.ca_cert, pki.cert, pki.key)).ok());
  EXPECT_EQ(last_answer_, grpc::health::v1::HealthCheckResponse::SERVING);
  // No client certificate, one from another CA, or no TLS at all.
  EXPECT_EQ(Check(Client(pki.ca_cert, "", "")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(
      Check(Client(pki.ca_cert, pki.other_cert, pki.other_key)).error_code(),
      grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Check(ChannelSecurity()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsServerTest, ClientRefusesAServerItsCaDidNotSign) {
  Start(/*require_client_certificate=*/true);
  const testing::TestPki& pki = Pki();
  EXPECT_EQ(Check(Client(pki.other_ca_cert, pki.cert, pki.key)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsServerTest, ServerNameOverrideIsCheckedAgainstTheCertificate) {
  Start(/*require_client_certificate=*/true);
  const testing::TestPki& pki = Pki();
  EXPECT_TRUE(Check(Client(pki.ca_cert, pki.cert, pki.key, "localhost")).ok());
  EXPECT_EQ(Check(Client(pki.ca_cert, pki.cert, pki.key, "elsewhere.example"))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsServerTest, OptionalClientCertificateIsVerifiedWhenPresented) {
  Start(/*require_client_certificate=*/false);
  const testing::TestPki& pki = Pki();
  EXPECT_TRUE(Check(Client(pki.ca_cert, "", "")).ok());
  EXPECT_TRUE(Check(Client(pki.ca_cert, pki.cert, pki.key)).ok());
  EXPECT_EQ(
      Check(Client(pki.ca_cert, pki.other_cert, pki.other_key)).error_code(),
      grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsServerTest, HealthPortIsPlaintextAndFollowsServing) {
  Start(/*require_client_certificate=*/true);
  ASSERT_NE(server_->health_port(), 0);
  EXPECT_TRUE(
      Check(ChannelSecurity(), "127.0.0.1", server_->health_port()).ok());
  EXPECT_EQ(last_answer_, grpc::health::v1::HealthCheckResponse::SERVING);
  server_->SetServing(false);
  EXPECT_TRUE(
      Check(ChannelSecurity(), "127.0.0.1", server_->health_port()).ok());
  EXPECT_EQ(last_answer_, grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

TEST(TlsServerStartTest, KeyOfAnotherCertificateFailsAtStart) {
  ServerTlsOptions tls;
  tls.cert_file = Pki().cert;
  tls.key_file = Pki().other_key;
  auto credentials = MakeServerCredentials(tls);
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  GrpcServerOptions options;
  options.listen = {"127.0.0.1", 0};
  options.credentials = *credentials;
  auto server = GrpcServer::Start(options, {});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("--tls_key"));
}

}  // namespace
}  // namespace longctx
