#include "memory_store/local_read_server.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "memory_store/local_read_protocol.h"
#include "memory_store/store_client.h"
#include "memory_store/testing/in_process_store.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

// A new folder with a short path: a Unix socket's path has at most 107
// bytes, and the test's own temporary folder may be longer.
std::string ShortTempDir() {
  char dir[] = "/tmp/lctx_XXXXXX";
  EXPECT_NE(mkdtemp(dir), nullptr);
  return dir;
}

std::string Key(int i) { return std::string(StoreClient::kKeySize, 'a' + i); }

std::string RandomBytes(size_t n, std::mt19937* rng) {
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>((*rng)());
  return bytes;
}

// A listener on a Unix socket at `path` that answers the first request of the
// first connection with `reply` and then keeps the connection open until
// destroyed (a store that misbehaves).
class FakeServer {
 public:
  FakeServer(const std::string& path, std::string reply)
      : reply_(std::move(reply)) {
    listener_ = socket(AF_UNIX, SOCK_STREAM, 0);
    const sockaddr_un address = *UnixAddress(path, "fake");
    EXPECT_EQ(bind(listener_, reinterpret_cast<const sockaddr*>(&address),
                   sizeof(address)),
              0);
    EXPECT_EQ(listen(listener_, 4), 0);
    thread_ = std::thread([this] {
      const int fd = accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      char head[8];
      if (RecvAll(fd, head, 8, "fake").ok()) {
        std::string key(GetU32(head + 4), '\0');
        if (RecvAll(fd, key.data(), key.size(), "fake").ok()) {
          SendAll(fd, reply_.data(), reply_.size(), "fake").IgnoreError();
        }
      }
      char c;
      while (recv(fd, &c, 1, 0) > 0) {
      }
      close(fd);
    });
  }
  ~FakeServer() {
    shutdown(listener_, SHUT_RDWR);
    close(listener_);
    thread_.join();
  }

 private:
  const std::string reply_;
  int listener_ = -1;
  std::thread thread_;
};

std::string Head(uint32_t magic, uint32_t parts) {
  std::string s(8, '\0');
  PutU32(s.data(), magic);
  PutU32(s.data() + 4, parts);
  return s;
}

std::string Frame(uint32_t code, uint64_t length) {
  std::string s(12, '\0');
  PutU32(s.data(), code);
  PutU64(s.data() + 4, length);
  return s;
}

class LocalReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = testing::InProcessStore::Start();
    dir_ = ShortTempDir();
    path_ = dir_ + "/store.sock";
    blocks_read_ = &prometheus::BuildCounter()
                        .Name("blocks_read")
                        .Register(registry_)
                        .Add({});
    LocalReadCounters counters;
    counters.blocks_read = blocks_read_;
    LocalReadOptions options;
    options.path = path_;
    auto server = LocalReadServer::Start(&store_->store(), options, counters);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::unique_ptr<StoreClient> Client(const std::string& socket) {
    StoreClientOptions options;
    options.call_timeout = absl::Seconds(1);
    options.max_retries = 0;
    options.local_sockets = {socket};
    return *StoreClient::Create({store_->address()}, options);
  }

  std::unique_ptr<testing::InProcessStore> store_;
  std::string dir_, path_;
  prometheus::Registry registry_;
  prometheus::Counter* blocks_read_ = nullptr;
  std::unique_ptr<LocalReadServer> server_;
};

TEST_F(LocalReadTest, ReadsWholeBlocksOverTheSocket) {
  std::mt19937 rng(3);
  const std::vector<std::string> parts = {RandomBytes(77, &rng),
                                          RandomBytes((2 << 20) + 3, &rng), "",
                                          RandomBytes(12345, &rng)};
  auto client = Client(path_);
  ASSERT_TRUE(client->Put(Key(1), parts).ok());
  // gRPC off: what is read now came over the socket.
  store_->Stop();
  for (int round = 0; round < 3; ++round) {  // Connections are reused.
    absl::StatusOr<StoredBlock> block = client->Read(Key(1));
    ASSERT_TRUE(block.ok()) << block.status();
    ASSERT_EQ(block->num_parts(), parts.size());
    size_t total = 0;
    for (size_t p = 0; p < parts.size(); ++p) {
      EXPECT_EQ(block->PartString(p), parts[p]) << p;
      total += parts[p].size();
    }
    EXPECT_EQ(block->size(), total);
  }
  EXPECT_EQ(blocks_read_->Value(), 3);
  absl::StatusOr<std::vector<std::string>> got = client->Get(Key(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, parts);
  // A block that is not stored: NOT_FOUND from the socket, not a fallback.
  absl::StatusOr<StoredBlock> missing = client->Read(Key(2));
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
}

// ReadInto: the first part into the head, the others back to back into the
// caller's buffer, which they must fill exactly; over the socket and, with
// none, over gRPC alike.
TEST_F(LocalReadTest, ReadIntoFillsTheCallersBufferExactly) {
  std::mt19937 rng(9);
  const std::vector<std::string> parts = {RandomBytes(40, &rng),
                                          RandomBytes(70000, &rng), "",
                                          RandomBytes(1 << 20, &rng)};
  const std::string rest_expected = parts[1] + parts[2] + parts[3];
  auto local = Client(path_);
  ASSERT_TRUE(local->Put(Key(3), parts).ok());
  StoreClientOptions options;
  options.call_timeout = absl::Seconds(1);
  auto grpc_only = *StoreClient::Create({store_->address()}, options);
  for (StoreClient* client : {local.get(), grpc_only.get()}) {
    SCOPED_TRACE(client == local.get() ? "local socket" : "gRPC");
    std::string head;
    std::vector<char> rest(rest_expected.size());
    ASSERT_TRUE(client->ReadInto(Key(3), &head, absl::MakeSpan(rest)).ok());
    EXPECT_EQ(head, parts[0]);
    EXPECT_EQ(std::string(rest.begin(), rest.end()), rest_expected);
    // A buffer of another size: DATA_LOSS, and nothing past it written.
    for (size_t size : {rest_expected.size() - 1, rest_expected.size() + 1}) {
      std::vector<char> guarded(size + 64, 'g');
      absl::Status status =
          client->ReadInto(Key(3), &head, absl::MakeSpan(guarded.data(), size));
      EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
      EXPECT_EQ(std::string(guarded.end() - 64, guarded.end()),
                std::string(64, 'g'));
    }
    EXPECT_TRUE(absl::IsNotFound(
        client->ReadInto(Key(4), &head, absl::MakeSpan(rest))));
  }
  EXPECT_GE(blocks_read_->Value(), 3);
}

TEST_F(LocalReadTest, FallsBackToGrpcWhenTheSocketIsGone) {
  auto client = Client(dir_ + "/nobody.sock");
  ASSERT_TRUE(client->Put(Key(1), {"head", "layer"}).ok());
  absl::StatusOr<std::vector<std::string>> got = client->Get(Key(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, (std::vector<std::string>{"head", "layer"}));
  EXPECT_EQ(blocks_read_->Value(), 0);

  // A store restarted under the client: its idle connection is dead, and
  // the next read takes a new one.
  auto local = Client(path_);
  ASSERT_TRUE(local->Get(Key(1)).ok());
  server_.reset();
  LocalReadOptions options;
  options.path = path_;
  LocalReadCounters counters;
  counters.blocks_read = blocks_read_;
  server_ = *LocalReadServer::Start(&store_->store(), options, counters);
  store_->Stop();
  got = local->Get(Key(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(blocks_read_->Value(), 2);
}

TEST_F(LocalReadTest, AMisbehavingStoreIsDataLossNotACrash) {
  store_->Stop();  // No gRPC to fall back to.
  struct Case {
    std::string name;
    std::string reply;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"bad magic", Head(0x12345678, 1) + Frame(0, 1) + "x",
       absl::StatusCode::kDataLoss},
      {"no parts", Head(kLocalResponseMagic, 0), absl::StatusCode::kDataLoss},
      {"too many parts", Head(kLocalResponseMagic, kMaxLocalParts + 1),
       absl::StatusCode::kDataLoss},
      // Refused before anything is allocated: the client's limit is 1 MiB.
      {"a huge part",
       Head(kLocalResponseMagic, 1) + Frame(0, uint64_t{1} << 60),
       absl::StatusCode::kDataLoss},
      {"parts over the limit together",
       Head(kLocalResponseMagic, 2) + Frame(0, 700 << 10) +
           std::string(700 << 10, 'a') + Frame(0, 700 << 10),
       absl::StatusCode::kDataLoss},
      {"an unknown status code",
       Head(kLocalResponseMagic, 1) + Frame(99, 2) + "no",
       absl::StatusCode::kDataLoss},
      {"a long error message",
       Head(kLocalResponseMagic, 1) + Frame(5, kMaxLocalMessageBytes + 1),
       absl::StatusCode::kDataLoss},
      {"an error it names", Head(kLocalResponseMagic, 1) + Frame(5, 4) + "gone",
       absl::StatusCode::kNotFound},
      // Fewer bytes than announced, then silence: the client's deadline.
      {"a stall", Head(kLocalResponseMagic, 1) + Frame(0, 100) + "abc",
       absl::StatusCode::kUnavailable},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = ShortTempDir() + "/fake.sock";
    FakeServer fake(path, c.reply);
    StoreClientOptions options;
    options.call_timeout = absl::Milliseconds(500);
    options.max_retries = 0;
    options.max_block_bytes = 1 << 20;
    options.local_sockets = {path};
    auto client = *StoreClient::Create({store_->address()}, options);
    const absl::Time start = absl::Now();
    absl::StatusOr<StoredBlock> block = client->Read(Key(1));
    EXPECT_EQ(block.status().code(), c.code) << block.status();
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  }
}

// Raw bytes at the server: what is not a request closes the connection, and
// the server goes on serving.
TEST_F(LocalReadTest, TheServerClosesOnAnythingButARequest) {
  auto client = Client(path_);
  ASSERT_TRUE(client->Put(Key(1), {"head"}).ok());
  for (const std::string& junk :
       {std::string("GET / HTTP/1.1\r\n\r\n"),
        Head(kLocalRequestMagic, kMaxLocalKeyBytes + 1),
        Head(kLocalRequestMagic, 40) + "short"}) {
    absl::StatusOr<int> fd = ConnectLocal(path_, absl::Seconds(1));
    ASSERT_TRUE(fd.ok()) << fd.status();
    ASSERT_TRUE(SendAll(*fd, junk.data(), junk.size(), "junk").ok());
    shutdown(*fd, SHUT_WR);
    char buffer[16];
    // Closed (or reset, when bytes were left unread) without an answer; the
    // short key waits for bytes that never come: the half-closed socket ends
    // it.
    EXPECT_LE(recv(*fd, buffer, sizeof(buffer), 0), 0);
    close(*fd);
  }
  store_->Stop();
  absl::StatusOr<std::vector<std::string>> got = client->Get(Key(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0], "head");
}

TEST_F(LocalReadTest, StartRefusesAPathInUseOrNotASocket) {
  LocalReadOptions options;
  options.path = path_;  // Served by server_.
  auto second = LocalReadServer::Start(&store_->store(), options, {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("another process"));

  options.path = dir_ + "/file";
  std::ofstream(options.path) << "not a socket";
  auto file = LocalReadServer::Start(&store_->store(), options, {});
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);

  options.path = std::string(200, 'p');
  EXPECT_EQ(
      LocalReadServer::Start(&store_->store(), options, {}).status().code(),
      absl::StatusCode::kInvalidArgument);

  // A stale socket file (its server gone without removing it) is replaced.
  const std::string stale = dir_ + "/stale.sock";
  {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    const sockaddr_un address = *UnixAddress(stale, "stale");
    ASSERT_EQ(
        bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)),
        0);
    close(fd);
  }
  options.path = stale;
  auto replaced = LocalReadServer::Start(&store_->store(), options, {});
  EXPECT_TRUE(replaced.ok()) << replaced.status();
}

TEST_F(LocalReadTest, ConnectionsBeyondTheLimitAreClosed) {
  server_.reset();
  LocalReadOptions options;
  options.path = path_;
  options.max_connections = 1;
  server_ = *LocalReadServer::Start(&store_->store(), options, {});
  absl::StatusOr<int> first = ConnectLocal(path_, absl::Seconds(1));
  ASSERT_TRUE(first.ok());
  absl::SleepFor(absl::Milliseconds(100));  // Accepted and served.
  absl::StatusOr<int> second = ConnectLocal(path_, absl::Seconds(1));
  ASSERT_TRUE(second.ok());
  char c;
  EXPECT_EQ(recv(*second, &c, 1, 0), 0);  // Closed by the server.
  close(*second);
  close(*first);
}

}  // namespace
}  // namespace longctx
