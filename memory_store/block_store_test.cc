#include "memory_store/block_store.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/testing/temp_dir.h"

namespace longctx {
namespace {

std::string TempDir() { return testing::NewTempDir("block_store"); }

std::string Key(int i) {
  std::string key(BlockStore::kKeySize, '\0');
  key[0] = static_cast<char>(i);
  key[15] = static_cast<char>(i >> 8);
  return key;
}

std::vector<std::string> RandomParts(std::mt19937& rng, int n, size_t size) {
  std::vector<std::string> parts(n);
  for (auto& part : parts) {
    part.resize(size);
    for (char& c : part) c = static_cast<char>(rng());
  }
  return parts;
}

TEST(BlockStoreTest, PutThenGetReturnsEveryPart) {
  auto store = BlockStore::Open({TempDir()});
  ASSERT_TRUE(store.ok()) << store.status();
  std::mt19937 rng(1);
  // Mix small parts (kept in the LSM) and large ones (blob files).
  std::vector<std::string> parts = RandomParts(rng, 3, 100);
  parts.push_back(std::string(70001, 'x'));
  ASSERT_TRUE((*store)->Put(Key(1), parts).ok());
  auto num_parts = (*store)->NumParts(Key(1));
  ASSERT_TRUE(num_parts.ok());
  EXPECT_EQ(*num_parts, 4);
  for (int i = 0; i < 4; ++i) {
    std::string value;
    ASSERT_TRUE((*store)->GetPart(Key(1), i, &value).ok());
    EXPECT_EQ(value, parts[i]) << "part " << i;
  }
  EXPECT_EQ((*store)->Stats().blocks, 1);
  EXPECT_EQ((*store)->Stats().bytes, 300 + 70001);
}

// The bytes a reader asks RocksDB to check: a byte flipped in a blob file is
// DATA_LOSS when the read verifies RocksDB's CRC32C, and comes back flipped
// when it does not (the default: the block format's own checksums, verified
// by every reader, catch it; see kv_block_format_test and store_crash_test).
TEST(BlockStoreTest, AFlippedBlobByteIsDataLossOnlyWhenTheReadVerifies) {
  const std::string dir = TempDir();
  std::mt19937 rng(7);
  const std::vector<std::string> parts = RandomParts(rng, 2, 70001);
  {
    auto store = BlockStore::Open({dir});
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Put(Key(1), parts).ok());
    ASSERT_TRUE((*store)->Flush().ok());  // The values go to a blob file.
  }
  std::string blob;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".blob") blob = entry.path();
  }
  ASSERT_FALSE(blob.empty()) << "no blob file in " << dir;
  // Flip one byte inside the last part's value (the blob file ends with a
  // small footer).
  std::fstream file(blob, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(0, std::ios::end);
  const std::streamoff at = static_cast<std::streamoff>(file.tellg()) - 1000;
  file.seekg(at);
  char byte = 0;
  file.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x40);
  file.seekp(at);
  file.write(&byte, 1);
  file.close();

  auto store = BlockStore::Open({dir});
  ASSERT_TRUE(store.ok()) << store.status();
  std::string value;
  ASSERT_TRUE((*store)->GetPart(Key(1), 0, &value, true).ok());
  EXPECT_EQ(value, parts[0]);
  EXPECT_EQ((*store)->GetPart(Key(1), 1, &value, true).code(),
            absl::StatusCode::kDataLoss);
  ASSERT_TRUE((*store)->GetPart(Key(1), 1, &value).ok());  // Default: no check.
  ASSERT_EQ(value.size(), parts[1].size());
  EXPECT_NE(value, parts[1]);
}

TEST(BlockStoreTest, MissingBlockIsNotFound) {
  auto store = BlockStore::Open({TempDir()});
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE(absl::IsNotFound((*store)->NumParts(Key(9)).status()));
  std::string value;
  EXPECT_TRUE(absl::IsNotFound((*store)->GetPart(Key(9), 0, &value)));
}

TEST(BlockStoreTest, RejectsBadKeysAndPartCounts) {
  auto store = BlockStore::Open({TempDir()});
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Put("short", {"x"}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->Put(Key(1), {}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BlockStoreTest, PutNeverReplacesAStoredBlock) {
  auto store = BlockStore::Open({TempDir()});
  ASSERT_TRUE(store.ok());
  bool written = false;
  ASSERT_TRUE((*store)->Put(Key(2), {"a", "b", "c"}, &written).ok());
  EXPECT_TRUE(written);
  // The same block again: a no-op.
  ASSERT_TRUE((*store)->Put(Key(2), {"a", "b", "c"}, &written).ok());
  EXPECT_FALSE(written);
  // Another part 0 or part count under the key: refused and counted.
  for (const std::vector<std::string>& other :
       std::vector<std::vector<std::string>>{
           {"dd"}, {"x", "b", "c"}, {"a", "b"}}) {
    absl::Status status = (*store)->Put(Key(2), other, &written);
    EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
    EXPECT_FALSE(written);
  }
  EXPECT_EQ((*store)->Stats().put_conflicts, 3);
  EXPECT_EQ(*(*store)->NumParts(Key(2)), 3);
  std::string value;
  ASSERT_TRUE((*store)->GetPart(Key(2), 0, &value).ok());
  EXPECT_EQ(value, "a");
  EXPECT_EQ((*store)->Stats().blocks, 1);
  EXPECT_EQ((*store)->Stats().bytes, 3);
  // Once deleted, the key takes a new block.
  ASSERT_TRUE((*store)->Delete({Key(2)}).ok());
  ASSERT_TRUE((*store)->Put(Key(2), {"dd"}, &written).ok());
  EXPECT_TRUE(written);
  ASSERT_TRUE((*store)->GetPart(Key(2), 0, &value).ok());
  EXPECT_EQ(value, "dd");
}

// Of Puts that race on one key with different blocks, exactly one stores its
// block and every other is refused.
TEST(BlockStoreTest, RacingPutsOfOneKeyStoreExactlyOneBlock) {
  auto store = BlockStore::Open({TempDir()});
  ASSERT_TRUE(store.ok());
  constexpr int kThreads = 8;
  std::vector<absl::Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      results[t] = (*store)->Put(Key(5), {absl::StrCat("header ", t), "layer"});
    });
  }
  for (std::thread& thread : threads) thread.join();
  int stored = 0;
  for (const absl::Status& status : results) {
    if (status.ok()) {
      ++stored;
    } else {
      EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
    }
  }
  EXPECT_EQ(stored, 1);
  EXPECT_EQ((*store)->Stats().put_conflicts, kThreads - 1);
  EXPECT_EQ((*store)->Stats().blocks, 1);
}

// Durable by default: every acknowledged write is covered by an fsync of the
// log, and concurrent writers share them (never more fsyncs than writes).
// Without sync_writes nothing is synced.
TEST(BlockStoreTest, AcknowledgedWritesAreSyncedAndConcurrentOnesShareSyncs) {
  EXPECT_TRUE(BlockStoreOptions().sync_writes);
  auto store = BlockStore::Open({TempDir()});
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Put(Key(1), {"one"}).ok());
  EXPECT_EQ((*store)->Stats().wal_syncs, 1);
  // The same block again writes nothing and needs no sync of its own.
  ASSERT_TRUE((*store)->Put(Key(1), {"one"}).ok());
  EXPECT_EQ((*store)->Stats().wal_syncs, 1);
  constexpr int kThreads = 8, kPerThread = 16;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!(*store)->Put(Key(100 + t * kPerThread + i), {"block"}).ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  const BlockStoreStats stats = (*store)->Stats();
  EXPECT_EQ(stats.blocks, 1 + kThreads * kPerThread);
  EXPECT_GE(stats.wal_syncs, 2);
  EXPECT_LE(stats.wal_syncs, 1 + kThreads * kPerThread);
  ASSERT_TRUE((*store)->Delete({Key(1)}).ok());
  EXPECT_GT((*store)->Stats().wal_syncs, stats.wal_syncs);

  BlockStoreOptions fast;
  fast.path = TempDir();
  fast.sync_writes = false;
  auto unsynced = BlockStore::Open(fast);
  ASSERT_TRUE(unsynced.ok());
  ASSERT_TRUE((*unsynced)->Put(Key(1), {"one"}).ok());
  EXPECT_EQ((*unsynced)->Stats().wal_syncs, 0);
}

TEST(BlockStoreTest, ContainsAndDelete) {
  auto store = BlockStore::Open({TempDir()});
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Put(Key(1), {"one"}).ok());
  ASSERT_TRUE((*store)->Put(Key(3), {"three"}).ok());
  std::vector<std::string> keys = {Key(1), Key(2), Key(3), "bad"};
  EXPECT_THAT((*store)->Contains(keys),
              ::testing::ElementsAre(true, false, true, false));
  std::vector<std::string> doomed = {Key(1), Key(1), Key(2)};
  auto deleted = (*store)->Delete(doomed);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  EXPECT_EQ((*store)->Stats().blocks, 1);
  EXPECT_EQ((*store)->Stats().bytes, 5);
}

TEST(BlockStoreTest, BlocksAndCountersSurviveReopening) {
  std::string dir = TempDir();
  std::mt19937 rng(2);
  std::vector<std::string> parts = RandomParts(rng, 5, 20000);
  {
    auto store = BlockStore::Open({dir});
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 10; ++i) ASSERT_TRUE((*store)->Put(Key(i), parts).ok());
  }
  auto store = BlockStore::Open({dir});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Stats().blocks, 10);
  EXPECT_EQ((*store)->Stats().bytes, 10 * 5 * 20000);
  std::string value;
  ASSERT_TRUE((*store)->GetPart(Key(7), 4, &value).ok());
  EXPECT_EQ(value, parts[4]);
}

BlockStoreOptions Budget(const std::string& dir, uint64_t max_bytes) {
  BlockStoreOptions options;
  options.path = dir;
  options.max_bytes = max_bytes;
  return options;
}

TEST(BlockStoreTest, StaysUnderItsBudgetUnderALargerWriteLoad) {
  auto store = BlockStore::Open(Budget(TempDir(), 1'000'000));
  ASSERT_TRUE(store.ok());
  std::mt19937 rng(3);
  for (int i = 0; i < 60; ++i) {
    // 2 parts of 30001 + 40007 bytes: 70008 per block, 14 blocks fit.
    std::vector<std::string> parts = {RandomParts(rng, 1, 30001)[0],
                                      RandomParts(rng, 1, 40007)[0]};
    ASSERT_TRUE((*store)->Put(Key(i), parts).ok()) << i;
    ASSERT_LE((*store)->Stats().bytes, 1'000'000) << "after block " << i;
  }
  BlockStoreStats stats = (*store)->Stats();
  EXPECT_EQ(stats.blocks, 14);
  EXPECT_EQ(stats.evictions, 46);
  // The newest blocks are the ones kept.
  std::vector<std::string> newest = {Key(59), Key(46), Key(45)};
  EXPECT_THAT((*store)->Contains(newest),
              ::testing::ElementsAre(true, true, false));
}

TEST(BlockStoreTest, EvictsTheLeastRecentlyUsedBlockFirst) {
  auto store = BlockStore::Open(Budget(TempDir(), 3000));
  ASSERT_TRUE(store.ok());
  const std::string kilobyte(1000, 'x');
  for (int i : {1, 2, 3}) ASSERT_TRUE((*store)->Put(Key(i), {kilobyte}).ok());
  // Reading block 1 makes block 2 the least recently used.
  ASSERT_TRUE((*store)->NumParts(Key(1)).ok());
  ASSERT_TRUE((*store)->Put(Key(4), {kilobyte}).ok());
  std::vector<std::string> keys = {Key(1), Key(2), Key(3), Key(4)};
  EXPECT_THAT((*store)->Contains(keys),
              ::testing::ElementsAre(true, false, true, true));
}

TEST(BlockStoreTest, EvictionOrderSurvivesReopening) {
  std::string dir = TempDir();
  const std::string kilobyte(1000, 'y');
  {
    auto store = BlockStore::Open(Budget(dir, 3000));
    ASSERT_TRUE(store.ok());
    for (int i : {1, 2, 3}) ASSERT_TRUE((*store)->Put(Key(i), {kilobyte}).ok());
    ASSERT_TRUE((*store)->NumParts(Key(1)).ok());
  }
  auto store = BlockStore::Open(Budget(dir, 3000));
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Put(Key(4), {kilobyte}).ok());
  std::vector<std::string> keys = {Key(1), Key(2), Key(3), Key(4)};
  EXPECT_THAT((*store)->Contains(keys),
              ::testing::ElementsAre(true, false, true, true));
}

TEST(BlockStoreTest, ABlockLargerThanTheBudgetIsRefused) {
  auto store = BlockStore::Open(Budget(TempDir(), 100));
  ASSERT_TRUE(store.ok());
  absl::Status status = (*store)->Put(Key(1), {std::string(101, 'z')});
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("--max_bytes"));
  EXPECT_EQ((*store)->Stats().blocks, 0);
}

TEST(BlockStoreTest, OpenFailsClearlyOnAnUnusablePath) {
  auto store = BlockStore::Open({"/proc/not-a-place-for-a-database"});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(),
              ::testing::HasSubstr("/proc/not-a-place-for-a-database"));
}

}  // namespace
}  // namespace longctx
