#include "services/rendezvous/rendezvous_service_impl.h"

#include <thread>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
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

// With an internal token configured, only callers that send it may read or
// write: nobody else can learn rank addresses or re-form a group.
TEST(RendezvousAuthTest, NeedsTheInternalToken) {
  const std::string token(40, 't');
  RendezvousServiceImpl service{InternalAuth(token)};
  GrpcServerOptions options;
  options.listen = {"127.0.0.1", 0};
  auto server = GrpcServer::Start(options, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());

  auto set = [&](const ChannelSecurity& security) {
    auto stub =
        rendezvous::v1::Rendezvous::NewStub(security.NewChannel(address));
    grpc::ClientContext context;
    rendezvous::v1::SetRequest request;
    request.set_key("k");
    rendezvous::v1::SetResponse response;
    return stub->Set(&context, request, &response);
  };
  auto get = [&](const ChannelSecurity& security) {
    auto stub =
        rendezvous::v1::Rendezvous::NewStub(security.NewChannel(address));
    grpc::ClientContext context;
    rendezvous::v1::GetRequest request;
    request.add_keys("k");
    rendezvous::v1::GetResponse response;
    return stub->Get(&context, request, &response);
  };
  const ChannelSecurity anonymous;
  grpc::Status refused = set(anonymous);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(refused.error_message(), HasSubstr("internal token"));
  EXPECT_EQ(get(anonymous).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(set(anonymous.WithBearerToken(std::string(40, 'u'))).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  const ChannelSecurity member = anonymous.WithBearerToken(token);
  EXPECT_TRUE(set(member).ok());
  EXPECT_TRUE(get(member).ok());
}

// The store is bounded: writes beyond --rendezvous_max_bytes are refused,
// naming it, while overwriting a key with a value of the same size still
// works.
TEST(RendezvousLimitsTest, AFullStoreRefusesNewKeys) {
  RendezvousLimits limits;
  limits.max_stored_bytes = 4 << 20;
  RendezvousServiceImpl service(InternalAuth(), limits);
  GrpcServerOptions options;
  options.listen = {"127.0.0.1", 0};
  auto server = GrpcServer::Start(options, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = rendezvous::v1::Rendezvous::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                          grpc::InsecureChannelCredentials()));
  const std::string value(kRendezvousMaxValueBytes, 'v');
  auto set = [&](const std::string& key) {
    grpc::ClientContext context;
    rendezvous::v1::SetRequest request;
    request.set_key(key);
    request.set_value(value);
    rendezvous::v1::SetResponse response;
    return stub->Set(&context, request, &response);
  };
  int stored = 0;
  grpc::Status status;
  while ((status = set("key-" + std::to_string(stored))).ok()) {
    ASSERT_LT(++stored, 2000) << "the store never filled up";
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--rendezvous_max_bytes"));
  // Every key and value counts: the store held all it could.
  EXPECT_LE(stored * (value.size() + 5), limits.max_stored_bytes);
  EXPECT_GT((stored + 1) * (value.size() + 8), limits.max_stored_bytes);
  EXPECT_TRUE(set("key-0").ok());  // Replacing is not growing.
}

}  // namespace
}  // namespace longctx
