#include "memory_store/store_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvblock/block_keys.h"
#include "kvblock/kv_block_format.h"
#include "memory_store/testing/in_process_store.h"
#include "services/common/grpc_server.h"

namespace longctx {
namespace {

using ::testing::AnyOf;
using ::testing::ElementsAre;

// Key i: the chained key of a one-token block, as real callers make them.
BlockKey Id(int i) {
  return ChainedBlockKeys(BlockKeySeed(Hash128{0x5eed, 0x1234}, ""), {i}, 1)[0];
}
std::string Key(int i) { return Id(i).key; }

std::string RandomBytes(size_t n, std::mt19937* rng) {
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>((*rng)());
  return bytes;
}

class StoreClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shards_.push_back(testing::InProcessStore::Start());
    shards_.push_back(testing::InProcessStore::Start());
    options_.call_timeout = absl::Milliseconds(500);
    client_ = *StoreClient::Create(
        {shards_[0]->address(), shards_[1]->address()}, options_);
  }

  StoreClientOptions options_;
  std::vector<std::unique_ptr<testing::InProcessStore>> shards_;
  std::unique_ptr<StoreClient> client_;
};

TEST_F(StoreClientTest, RoundTripOfABlockLargerThanTheMessageLimit) {
  std::mt19937 rng(42);
  const std::vector<std::string> parts = {
      RandomBytes(77, &rng), RandomBytes((2 << 20) + 3, &rng), "",
      RandomBytes((5 << 19) - 1, &rng), RandomBytes(1 << 20, &rng)};
  size_t total = 0;
  for (const std::string& part : parts) total += part.size();
  ASSERT_GT(total, 4u << 20);
  ASSERT_TRUE(client_->Put(Key(1), parts).ok());
  absl::StatusOr<std::vector<std::string>> got = client_->Get(Key(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, parts);
  got = client_->Get(Key(1), {4, 0, 2});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAre(parts[4], parts[0], ""));
}

TEST_F(StoreClientTest, EncodedKvBlockSurvivesTheStore) {
  KvLayout layout;
  layout.num_layers = 7;
  layout.num_kv_heads = 3;
  layout.head_dim = 129;
  layout.block_size = 255;
  layout.dtype = KvDtype::kF32;
  std::mt19937 rng(7);
  std::vector<uint8_t> block(layout.BlockBytes());
  for (uint8_t& b : block) b = static_cast<uint8_t>(rng());
  const Hash128 fingerprint{1, 2};
  std::vector<std::string> parts =
      *EncodeKvBlock(layout, fingerprint, Id(2), 255, block.data());
  ASSERT_TRUE(client_->Put(Key(2), parts).ok());
  absl::StatusOr<std::vector<std::string>> got = client_->Get(Key(2));
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<uint8_t> restored(layout.BlockBytes());
  ASSERT_TRUE(
      DecodeKvBlockInto(*got, layout, fingerprint, Id(2), restored.data())
          .ok());
  EXPECT_EQ(restored, block);

  // Read: the same block decoded where it landed, after the StoredBlock has
  // moved (its pieces must not move with it).
  absl::StatusOr<StoredBlock> read = client_->Read(Key(2));
  ASSERT_TRUE(read.ok()) << read.status();
  StoredBlock moved = *std::move(read);
  std::vector<StoredBlock> holder;
  holder.push_back(std::move(moved));
  ASSERT_EQ(holder[0].num_parts(), parts.size());
  size_t total = 0;
  for (size_t p = 0; p < parts.size(); ++p) {
    EXPECT_EQ(holder[0].PartString(p), parts[p]);
    total += parts[p].size();
  }
  EXPECT_EQ(holder[0].size(), total);
  std::fill(restored.begin(), restored.end(), 0);
  ASSERT_TRUE(DecodeKvBlockPiecesInto(holder[0].Parts(), layout, fingerprint,
                                      Id(2), restored.data())
                  .ok());
  EXPECT_EQ(restored, block);
}

TEST_F(StoreClientTest, ABlockOverMaxBlockBytesIsRefused) {
  std::mt19937 rng(5);
  const std::vector<std::string> parts = {RandomBytes(10, &rng),
                                          RandomBytes(3 << 20, &rng)};
  ASSERT_TRUE(client_->Put(Key(9), parts).ok());
  StoreClientOptions small = options_;
  small.max_block_bytes = 1 << 20;
  std::unique_ptr<StoreClient> client = *StoreClient::Create(
      {shards_[0]->address(), shards_[1]->address()}, small);
  absl::StatusOr<StoredBlock> read = client->Read(Key(9));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), ::testing::HasSubstr("max_block_bytes"));
  // Within the limit, the same client reads it.
  small.max_block_bytes = 4 << 20;
  client = *StoreClient::Create({shards_[0]->address(), shards_[1]->address()},
                                small);
  read = client->Read(Key(9));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->PartString(1), parts[1]);
}

TEST_F(StoreClientTest, KeysSpreadOverBothShardsAsPlaced) {
  const int kKeys = 60;
  std::vector<int> per_shard(2, 0);
  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back(Key(100 + i));
    ASSERT_TRUE(client_->Put(keys.back(), {"h", std::to_string(i)}).ok());
    ++per_shard[client_->ShardOf(keys.back())];
  }
  for (int s = 0; s < 2; ++s) {
    EXPECT_GT(per_shard[s], kKeys / 5) << "shard " << s;
    EXPECT_EQ(shards_[s]->store().Stats().blocks, per_shard[s])
        << "shard " << s;
  }
  keys.push_back(Key(999));  // Never stored.
  keys.push_back("short");   // Malformed.
  std::vector<bool> present = client_->Contains(keys);
  ASSERT_EQ(present.size(), keys.size());
  for (int i = 0; i < kKeys; ++i) EXPECT_TRUE(present[i]) << i;
  EXPECT_FALSE(present[kKeys]);
  EXPECT_FALSE(present[kKeys + 1]);

  absl::StatusOr<int64_t> deleted =
      client_->Delete(absl::MakeConstSpan(keys).subspan(0, kKeys + 1));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, kKeys);
  EXPECT_EQ(shards_[0]->store().Stats().blocks, 0);
  EXPECT_EQ(shards_[1]->store().Stats().blocks, 0);
  EXPECT_EQ(client_->Get(Key(100)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreClientTest, BadArgumentsAreInvalidArgument) {
  EXPECT_EQ(client_->Put("short", {"x"}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Put(Key(3), {}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Get("").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Delete({Key(3), "x"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(client_->Put(Key(3), {"only"}).ok());
  EXPECT_EQ(client_->Get(Key(3), {1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StoreClient::Create({}, options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StoreClient::Create({shards_[0]->address(), shards_[0]->address()},
                                options_)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  StoreClientOptions no_room = options_;
  no_room.max_block_bytes = 0;
  EXPECT_EQ(
      StoreClient::Create({shards_[0]->address()}, no_room).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreClientTest, StoppedShardsKeysAreMissesWithinTheTimeout) {
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) {
    keys.push_back(Key(200 + i));
    ASSERT_TRUE(client_->Put(keys.back(), {"h", "layer"}).ok());
  }
  shards_[1]->Stop();

  const absl::Duration limit =
      (1 + options_.max_retries) * options_.call_timeout + absl::Seconds(1);
  absl::Time start = absl::Now();
  std::vector<bool> present = client_->Contains(keys);
  EXPECT_LT(absl::Now() - start, limit);
  int served = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const bool on_live_shard = client_->ShardOf(keys[i]) == 0;
    EXPECT_EQ(present[i], on_live_shard) << "key " << i;
    start = absl::Now();
    absl::StatusOr<std::vector<std::string>> got = client_->Get(keys[i]);
    EXPECT_LT(absl::Now() - start, limit);
    if (on_live_shard) {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_THAT(*got, ElementsAre("h", "layer"));
      ++served;
    } else {
      EXPECT_THAT(got.status().code(),
                  AnyOf(absl::StatusCode::kUnavailable,
                        absl::StatusCode::kDeadlineExceeded,
                        absl::StatusCode::kNotFound));
    }
  }
  EXPECT_GT(served, 0);
  EXPECT_LT(served, 40);
  start = absl::Now();
  // A new key (a stored one keeps its block: Put never replaces it).
  const std::string fresh = Key(300);
  EXPECT_EQ(client_->Put(fresh, {"x"}).ok(), client_->ShardOf(fresh) == 0);
  EXPECT_EQ(client_->Delete(keys).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, 2 * limit);
}

// SilentListener accepts TCP connections (in the kernel's backlog) and never
// answers: a shard that hangs rather than refuses.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on a loopback port";
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() {
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(StoreClientTest, HangingShardCostsAtMostTheTimeoutPerAttempt) {
  SilentListener silent;
  std::unique_ptr<StoreClient> client = *StoreClient::Create(
      {shards_[0]->address(), {"127.0.0.1", silent.port()}}, options_);
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) keys.push_back(Key(300 + i));
  for (const std::string& key : keys) {
    if (client->ShardOf(key) == 0) {
      ASSERT_TRUE(client->Put(key, {"h"}).ok());
    }
  }
  const absl::Duration limit =
      (1 + options_.max_retries) * options_.call_timeout + absl::Seconds(1);
  absl::Time start = absl::Now();
  std::vector<bool> present = client->Contains(keys);
  EXPECT_LT(absl::Now() - start, limit);
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(present[i], client->ShardOf(keys[i]) == 0) << "key " << i;
  }
  for (const std::string& key : keys) {
    if (client->ShardOf(key) != 1) continue;
    start = absl::Now();
    EXPECT_THAT(client->Get(key).status().code(),
                AnyOf(absl::StatusCode::kUnavailable,
                      absl::StatusCode::kDeadlineExceeded));
    EXPECT_LT(absl::Now() - start, limit);
    break;
  }
}

TEST(StoreClientPlacementTest, SameKeyGoesToSameShardAcrossClients) {
  const std::vector<HostPort> shards = {
      {"10.0.0.1", 7001}, {"10.0.0.2", 7001}, {"store-3.local", 7002}};
  const std::vector<HostPort> reversed(shards.rbegin(), shards.rend());
  std::unique_ptr<StoreClient> a = *StoreClient::Create(shards, {});
  std::unique_ptr<StoreClient> b = *StoreClient::Create(shards, {});
  std::unique_ptr<StoreClient> c = *StoreClient::Create(reversed, {});
  for (int i = 0; i < 1000; ++i) {
    const std::string key = Key(i);
    EXPECT_EQ(a->ShardOf(key), b->ShardOf(key));
    EXPECT_EQ(a->shard_address(a->ShardOf(key)).ToString(),
              c->shard_address(c->ShardOf(key)).ToString());
  }
}

TEST(StoreClientPlacementTest, AddingAThirdShardMovesAboutAThirdOfTheKeys) {
  const std::vector<HostPort> two = {{"10.0.0.1", 7001}, {"10.0.0.2", 7001}};
  std::vector<HostPort> three = two;
  three.push_back({"10.0.0.3", 7001});
  std::unique_ptr<StoreClient> before = *StoreClient::Create(two, {});
  std::unique_ptr<StoreClient> after = *StoreClient::Create(three, {});
  const int kKeys = 3000;
  int moved = 0;
  std::vector<int> count(2, 0);
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = Key(i);
    const int old_shard = before->ShardOf(key);
    const int new_shard = after->ShardOf(key);
    ++count[old_shard];
    if (new_shard != old_shard) {
      ++moved;
      EXPECT_EQ(new_shard, 2) << "a key may only move to the new shard";
    }
  }
  // Expected 1000 moved; 4 standard deviations (~26 each) either side.
  EXPECT_GT(moved, 900);
  EXPECT_LT(moved, 1100);
  // Two shards share the keys about evenly (expected 1500, sd ~27).
  EXPECT_GT(count[0], 1390);
  EXPECT_GT(count[1], 1390);
}

}  // namespace
}  // namespace longctx
