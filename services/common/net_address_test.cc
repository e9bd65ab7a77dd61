#include "services/common/net_address.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

TEST(ParseHostPortTest, AcceptsHostAndPort) {
  auto address = ParseHostPort("127.0.0.1:50051", "listen_address");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->host, "127.0.0.1");
  EXPECT_EQ(address->port, 50051);
  EXPECT_EQ(address->ToString(), "127.0.0.1:50051");
}

TEST(ParseHostPortTest, AcceptsBracketedIpv6) {
  auto address = ParseHostPort("[::1]:0", "listen_address");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->host, "::1");
  EXPECT_EQ(address->port, 0);
  EXPECT_EQ(address->ToString(), "[::1]:0");
}

TEST(ParseHostPortTest, RejectsMalformedAddressesNamingTheFlag) {
  for (const char* bad :
       {"", "localhost", ":80", "host:", "host:http", "host:70000", "host:-1",
        "::1:80", "[::1]80", "a b:80"}) {
    auto address = ParseHostPort(bad, "workers");
    ASSERT_FALSE(address.ok()) << bad;
    EXPECT_EQ(address.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(address.status().message(), HasSubstr("--workers")) << bad;
  }
}

TEST(ParseHostPortListTest, SplitsOnCommasAndRejectsEmptyEntries) {
  auto list = ParseHostPortList("a:1,b:2", "workers");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].host, "b");
  EXPECT_TRUE(ParseHostPortList("", "workers")->empty());
  EXPECT_FALSE(ParseHostPortList("a:1,,b:2", "workers").ok());
}

TEST(CheckPortFreeTest, ReportsAPortHeldByAnotherSocket) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  HostPort held{"127.0.0.1", ntohs(addr.sin_port)};
  absl::Status status = CheckPortFree(held, "--listen_address");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("already in use"));
  close(fd);
  EXPECT_TRUE(CheckPortFree(held, "--listen_address").ok());
}

}  // namespace
}  // namespace longctx
