// KvOffloader against real memory_store shards (RocksDB on disk, served over
// gRPC on loopback ports): blocks spread over several shards come back
// byte for byte, with one stream or several per shard, and a shard that is
// down ends the restored prefix at its first block.
#include "engine/kv_offloader.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/testing/staged_memory.h"
#include "gtest/gtest.h"
#include "memory_store/block_store.h"
#include "memory_store/local_read_server.h"
#include "memory_store/memory_store_service_impl.h"
#include "memory_store/store_client.h"
#include "memory_store/testing/in_process_store.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "services/common/grpc_server.h"

namespace longctx {
namespace {

constexpr Hash128 kFingerprint{0xabc, 0xdef};
constexpr int kShards = 3;
constexpr int kBlocks = 13;  // Not a multiple of the shard count.

KvLayout Layout() {
  KvLayout layout;
  layout.num_layers = 3;
  layout.num_kv_heads = 2;
  layout.head_dim = 24;
  layout.block_size = 37;
  layout.dtype = KvDtype::kF16;
  return layout;
}

BlockKey Key(int i) {
  BlockKey id;
  id.key.assign(StoreClient::kKeySize, '\0');
  id.key[0] = static_cast<char>(i);
  id.key[1] = static_cast<char>(i >> 8);
  id.key[9] = static_cast<char>(0x5a);
  id.token_digest.assign(kBlockKeyBytes, static_cast<char>(i));
  return id;
}

// Every test runs twice: reading over gRPC, and over each shard's local
// socket (blocks received straight into the pool and verified there).
class KvOffloaderTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    StoreClientOptions options;
    options.call_timeout = absl::Milliseconds(500);
    options.max_retries = 0;
    local_reads_ = &prometheus::BuildCounter()
                        .Name("local_reads")
                        .Register(registry_)
                        .Add({});
    for (int s = 0; s < kShards; ++s) {
      shards_.push_back(testing::InProcessStore::Start());
      addresses_.push_back(shards_.back()->address());
      if (GetParam()) {
        char dir[] = "/tmp/lctx_XXXXXX";
        ASSERT_NE(mkdtemp(dir), nullptr);
        LocalReadOptions local;
        local.path = std::string(dir) + "/store.sock";
        LocalReadCounters counters;
        counters.blocks_read = local_reads_;
        local_.push_back(
            *LocalReadServer::Start(&shards_.back()->store(), local, counters));
        options.local_sockets.push_back(local.path);
      }
    }
    client_ = *StoreClient::Create(addresses_, options);
    // Which shard holds a key depends on the shards' (random) ports: pick keys
    // whose shards take turns, so every shard holds blocks of the prefix.
    for (int i = 0, j = 0; i < kBlocks; ++j) {
      if (client_->ShardOf(Key(j).key) == i % kShards) {
        keys_.push_back(Key(j));
        ++i;
      }
    }

    // Random contents, offloaded from a pool of their own.
    source_ = *KvBlockPool::Create(Layout(), Layout().BlockBytes() * kBlocks);
    std::mt19937 rng(11);
    KvOffloader offloader(client_.get(), source_.get(), kFingerprint, {},
                          nullptr);
    for (int i = 0; i < kBlocks; ++i) {
      const int block = *source_->Allocate();
      source_blocks_.push_back(block);
      uint8_t* data = source_->Data(block);
      for (size_t b = 0; b < Layout().BlockBytes(); ++b) data[b] = rng();
      ASSERT_TRUE(offloader.Offload(keys_[i], block, Layout().block_size));
    }
    offloader.WaitIdle();
  }

  // Restores every key into a new pool with `streams` per shard; returns the
  // restored count and checks the restored blocks byte for byte.
  int RestoreAndCheck(int streams) { return RestoreAndCheck(streams, keys_); }
  int RestoreAndCheck(int streams, const std::vector<BlockKey>& ids) {
    auto pool = *KvBlockPool::Create(Layout(), Layout().BlockBytes() * kBlocks);
    std::vector<int> blocks;
    for (int i = 0; i < kBlocks; ++i) blocks.push_back(*pool->Allocate());
    KvOffloaderOptions options;
    options.restore_streams_per_shard = streams;
    KvOffloader offloader(client_.get(), pool.get(), kFingerprint, options,
                          nullptr);
    const int restored = offloader.Restore(ids, blocks);
    for (int i = 0; i < restored; ++i) {
      EXPECT_EQ(
          std::string(reinterpret_cast<char*>(pool->Data(blocks[i])),
                      Layout().BlockBytes()),
          std::string(reinterpret_cast<char*>(source_->Data(source_blocks_[i])),
                      Layout().BlockBytes()))
          << "block " << i << " with " << streams << " streams per shard";
    }
    return restored;
  }

  // Takes shard `s` off the network, gRPC and local socket.
  void StopShard(int s) {
    shards_[s]->Stop();
    if (GetParam()) local_[s].reset();
  }

  std::vector<HostPort> addresses_;
  std::vector<std::unique_ptr<testing::InProcessStore>> shards_;
  std::vector<std::unique_ptr<LocalReadServer>> local_;
  prometheus::Registry registry_;
  prometheus::Counter* local_reads_ = nullptr;  // Blocks read over them.
  std::unique_ptr<StoreClient> client_;
  std::vector<BlockKey> keys_;
  std::unique_ptr<KvBlockPool> source_;
  std::vector<int> source_blocks_;
};

TEST_P(KvOffloaderTest, BlocksOnEveryShardComeBackByteForByte) {
  std::vector<int> per_shard(kShards, 0);
  for (const BlockKey& id : keys_) ++per_shard[client_->ShardOf(id.key)];
  for (int s = 0; s < kShards; ++s) {
    EXPECT_GT(per_shard[s], 0) << "no block on shard " << s;
    EXPECT_EQ(shards_[s]->store().Stats().blocks, per_shard[s]);
  }
  for (int streams : {1, 2, 5}) EXPECT_EQ(RestoreAndCheck(streams), kBlocks);
  // Each way read what it says it did: 3 restores of every block.
  EXPECT_EQ(local_reads_->Value(), GetParam() ? 3 * kBlocks : 0);
}

TEST_P(KvOffloaderTest, AShardThatIsDownEndsThePrefixAtItsFirstBlock) {
  const int down = client_->ShardOf(keys_[kBlocks / 2].key);
  int first_on_down = 0;
  while (client_->ShardOf(keys_[first_on_down].key) != down) ++first_on_down;
  StopShard(down);
  for (int streams : {1, 3}) {
    EXPECT_EQ(RestoreAndCheck(streams), first_on_down);
  }
}

TEST_P(KvOffloaderTest, ABlockOfAnotherModelEndsThePrefix) {
  // Block 4 replaced (deleted, then stored again) by the same bytes stored
  // for another model.
  ASSERT_TRUE(client_->Delete({keys_[4].key}).ok());
  KvOffloader other(client_.get(), source_.get(), Hash128{1, 2}, {}, nullptr);
  ASSERT_TRUE(other.Offload(keys_[4], source_blocks_[4], Layout().block_size));
  other.WaitIdle();
  EXPECT_EQ(RestoreAndCheck(1), 4);
  EXPECT_EQ(RestoreAndCheck(2), 4);
}

// A stored block is never replaced: another block offloaded under its key is
// refused by the store and counted, and the first one is what restores.
TEST_P(KvOffloaderTest, AnotherBlockUnderAStoredKeyIsRefusedAndCounted) {
  auto pool = *KvBlockPool::Create(Layout(), Layout().BlockBytes());
  const int block = *pool->Allocate();
  std::memset(pool->Data(block), 0x77, Layout().BlockBytes());
  prometheus::Registry registry;
  {
    KvOffloader attacker(client_.get(), pool.get(), kFingerprint, {},
                         &registry);
    ASSERT_TRUE(attacker.Offload(keys_[4], block, Layout().block_size));
    attacker.WaitIdle();
  }
  double conflicts = -1;
  for (const auto& family : registry.Collect()) {
    if (family.name == "longctx_offload_conflicts_total") {
      conflicts = family.metric.at(0).counter.value;
    }
  }
  EXPECT_EQ(conflicts, 1);
  EXPECT_EQ(
      shards_[client_->ShardOf(keys_[4].key)]->store().Stats().put_conflicts,
      1);
  EXPECT_EQ(RestoreAndCheck(1), kBlocks);  // Byte for byte the first blocks.
}

// A block read under another key than its header records, or for other
// tokens than the prompt's, is foreign: the restored prefix ends before it.
TEST_P(KvOffloaderTest, ABlockUnderAnotherKeyOrForOtherTokensEndsThePrefix) {
  // Block 7's bytes, header and all, copied under block 6's key.
  absl::StatusOr<std::vector<std::string>> parts = client_->Get(keys_[7].key);
  ASSERT_TRUE(parts.ok()) << parts.status();
  ASSERT_TRUE(client_->Delete({keys_[6].key}).ok());
  ASSERT_TRUE(client_->Put(keys_[6].key, *parts).ok());
  EXPECT_EQ(RestoreAndCheck(1), 6);
  // The prompt's block 3 holds other tokens than the stored one.
  std::vector<BlockKey> ids = keys_;
  ids[3].token_digest[0] ^= 1;
  EXPECT_EQ(RestoreAndCheck(1, ids), 3);
}

// A block whose stored bytes changed (one byte of one layer) ends the
// prefix: it is never served, over gRPC or received in place.
TEST_P(KvOffloaderTest, ACorruptedBlockEndsThePrefix) {
  absl::StatusOr<std::vector<std::string>> parts = client_->Get(keys_[5].key);
  ASSERT_TRUE(parts.ok()) << parts.status();
  (*parts)[2][(*parts)[2].size() / 3] ^= 0x10;
  ASSERT_TRUE(client_->Delete({keys_[5].key}).ok());
  ASSERT_TRUE(client_->Put(keys_[5].key, *parts).ok());
  EXPECT_EQ(RestoreAndCheck(1), 5);
  EXPECT_EQ(RestoreAndCheck(3), 5);
}

// A pool the host cannot address (a GPU's, simulated by StagedMemory):
// blocks leave through CopyOut and come back through CopyIn, byte for byte,
// by reference (Offload) and by copy (OffloadCopy).
TEST_P(KvOffloaderTest, APoolInOtherMemoryOffloadsAndRestoresThroughCopies) {
  auto memory =
      std::make_unique<testing::StagedMemory>(Layout().BlockBytes() * kBlocks);
  testing::StagedMemory* staged = memory.get();
  auto pool = *KvBlockPool::CreateIn(Layout(), std::move(memory));
  std::vector<int> blocks;
  std::vector<BlockKey> keys;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(*pool->Allocate());
    std::vector<uint8_t> bytes(Layout().BlockBytes(),
                               static_cast<uint8_t>(0x30 + i));
    ASSERT_TRUE(pool->WriteBlock(blocks[i], bytes.data()).ok());
    keys.push_back(Key(1000 + i));
  }
  {
    KvOffloader offloader(client_.get(), pool.get(), kFingerprint, {}, nullptr);
    ASSERT_TRUE(offloader.Offload(keys[0], blocks[0], Layout().block_size));
    ASSERT_TRUE(offloader.Offload(keys[1], blocks[1], Layout().block_size));
    ASSERT_TRUE(offloader.OffloadCopy(keys[2], blocks[2], Layout().block_size));
    ASSERT_TRUE(offloader.OffloadCopy(keys[3], blocks[3], Layout().block_size));
    offloader.WaitIdle();
  }
  EXPECT_EQ(staged->copied_out(),
            4 * static_cast<int64_t>(Layout().BlockBytes()));
  // Back into other blocks of the same kind of pool.
  auto target = *KvBlockPool::CreateIn(
      Layout(),
      std::make_unique<testing::StagedMemory>(Layout().BlockBytes() * 4));
  std::vector<int> into;
  for (int i = 0; i < 4; ++i) into.push_back(*target->Allocate());
  KvOffloader restorer(client_.get(), target.get(), kFingerprint, {}, nullptr);
  ASSERT_EQ(restorer.Restore(keys, into), 4);
  std::vector<uint8_t> a(Layout().BlockBytes()), b(Layout().BlockBytes());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(pool->ReadBlock(blocks[i], a.data()).ok());
    ASSERT_TRUE(target->ReadBlock(into[i], b.data()).ok());
    EXPECT_EQ(a, b) << "block " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(GrpcAndLocalSocket, KvOffloaderTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "LocalSocket" : "Grpc";
                         });

}  // namespace
}  // namespace longctx
