#include "engine/kv_block_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "engine/testing/staged_memory.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

KvLayout SmallLayout() {
  KvLayout layout;
  layout.num_layers = 3;
  layout.num_kv_heads = 2;
  layout.head_dim = 5;
  layout.block_size = 7;
  layout.dtype = KvDtype::kF16;
  return layout;
}

TEST(KvLayoutTest, SizesFollowTheBlockLayout) {
  KvLayout layout = SmallLayout();
  EXPECT_EQ(layout.TensorBytes(), 2u * 7 * 5 * 2);
  EXPECT_EQ(layout.LayerBytes(), 2 * layout.TensorBytes());
  EXPECT_EQ(layout.BlockBytes(), 3 * layout.LayerBytes());
  layout.dtype = KvDtype::kF32;
  EXPECT_EQ(layout.TensorBytes(), 2u * 7 * 5 * 4);
}

TEST(KvBlockPoolTest, CapacityIsTheBudgetInWholeBlocks) {
  KvLayout layout = SmallLayout();
  auto pool = KvBlockPool::Create(layout, layout.BlockBytes() * 4 + 1);
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ((*pool)->capacity(), 4);
  EXPECT_EQ((*pool)->free_blocks(), 4);
  EXPECT_EQ(
      KvBlockPool::Create(layout, layout.BlockBytes() - 1).status().code(),
      absl::StatusCode::kResourceExhausted);
  layout.head_dim = 0;
  EXPECT_EQ(KvBlockPool::Create(layout, 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Pages of [data, data + bytes) that are resident in memory.
size_t ResidentPages(const uint8_t* data, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(data) / page * page;
  const size_t pages =
      (reinterpret_cast<uintptr_t>(data) + bytes - start + page - 1) / page;
  std::vector<unsigned char> resident(pages);
  EXPECT_EQ(
      mincore(reinterpret_cast<void*>(start), pages * page, resident.data()),
      0);
  size_t count = 0;
  for (unsigned char r : resident) count += r & 1;
  return count;
}

TEST(KvBlockPoolTest, APrefaultedPoolIsResidentFromTheStartAndZeroed) {
  KvLayout layout = SmallLayout();
  layout.block_size = 1000;  // 60,000 bytes a block: blocks straddle pages.
  const int blocks = 150;    // About 8.6 MiB: several huge pages.
  const size_t bytes = layout.BlockBytes() * blocks;
  auto lazy = *KvBlockPool::Create(layout, bytes, /*prefault=*/false);
  auto eager = *KvBlockPool::Create(layout, bytes, /*prefault=*/true);
  ASSERT_EQ(eager->capacity(), blocks);
  // Blocks start on a huge page boundary.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(eager->Data(0)) % (2 << 20), 0u);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(ResidentPages(eager->Data(0), bytes), (bytes + page - 1) / page);
  EXPECT_EQ(ResidentPages(lazy->Data(0), bytes), 0u);
  for (int b = 0; b < blocks; ++b) {
    const uint8_t* data = eager->Data(b);
    for (size_t i = 0; i < layout.BlockBytes(); ++i) ASSERT_EQ(data[i], 0);
  }
  // Every block of the lazy pool is writable; writing it makes it resident.
  for (int b = 0; b < blocks; ++b) {
    std::fill(lazy->Data(b), lazy->Data(b) + layout.BlockBytes(), b & 0xff);
  }
  EXPECT_EQ(ResidentPages(lazy->Data(0), bytes), (bytes + page - 1) / page);
  EXPECT_EQ(lazy->Data(blocks - 1)[layout.BlockBytes() - 1],
            (blocks - 1) & 0xff);
}

TEST(KvBlockPoolTest, AllocatesDistinctBlocksUntilFullThenFreesByRefcount) {
  KvLayout layout = SmallLayout();
  auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * 3);
  std::set<int> blocks;
  for (int i = 0; i < 3; ++i) blocks.insert(*pool->Allocate());
  EXPECT_EQ(blocks.size(), 3u);
  EXPECT_EQ(pool->Allocate().status().code(),
            absl::StatusCode::kResourceExhausted);
  int shared = *blocks.begin();
  pool->Ref(shared);
  pool->Unref(shared);
  EXPECT_EQ(pool->free_blocks(), 0);  // Still referenced once.
  pool->Unref(shared);
  EXPECT_EQ(pool->free_blocks(), 1);
  EXPECT_EQ(*pool->Allocate(), shared);
}

TEST(KvBlockPoolTest, LayerTensorsTileTheBlockWithoutOverlap) {
  KvLayout layout = SmallLayout();
  auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * 2);
  int a = *pool->Allocate();
  int b = *pool->Allocate();
  for (int block : {a, b}) {
    for (int layer = 0; layer < layout.num_layers; ++layer) {
      EXPECT_EQ(pool->K(block, layer),
                pool->Data(block) + layer * layout.LayerBytes());
      EXPECT_EQ(pool->V(block, layer),
                pool->K(block, layer) + layout.TensorBytes());
    }
    EXPECT_EQ(pool->V(block, layout.num_layers - 1) + layout.TensorBytes(),
              pool->Data(block) + layout.BlockBytes());
  }
  // Writing all of one block leaves the other untouched.
  std::fill(pool->Data(b), pool->Data(b) + layout.BlockBytes(), 0x5a);
  std::fill(pool->Data(a), pool->Data(a) + layout.BlockBytes(), 0x11);
  for (size_t i = 0; i < layout.BlockBytes(); ++i) {
    ASSERT_EQ(pool->Data(b)[i], 0x5a);
  }
}

TEST(KvBlockPoolTest, DropCachedForgetsEveryKeyAndFreesWhatNobodyHolds) {
  KvLayout layout = SmallLayout();
  auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * 4);
  const int held = *pool->Allocate();
  const int cached = *pool->Allocate();
  const int stored = *pool->Allocate();
  ASSERT_TRUE(pool->Publish("held", held));
  ASSERT_TRUE(pool->Publish("cached", cached));
  ASSERT_TRUE(pool->Publish("stored", stored));
  pool->MarkStored("stored");
  pool->Unref(cached);
  pool->Unref(stored);
  EXPECT_EQ(pool->free_blocks(), 3);  // One never used, two cached.
  EXPECT_EQ(pool->DropCached(), 3);
  EXPECT_EQ(pool->cached_blocks(), 0);
  for (const char* key : {"held", "cached", "stored"}) {
    EXPECT_EQ(pool->Lookup(key), -1) << key;
  }
  EXPECT_EQ(pool->free_blocks(), 3);
  EXPECT_TRUE(pool->InUse(held));
  EXPECT_FALSE(pool->InUse(cached));
  EXPECT_FALSE(pool->InUse(stored));
  // The held block is free after its last reference, not cached.
  pool->Unref(held);
  EXPECT_EQ(pool->free_blocks(), 4);
  EXPECT_EQ(pool->cached_blocks(), 0);
  // Nothing was evicted, and every block can be taken again once.
  EXPECT_EQ(pool->evicted_blocks(), 0);
  std::set<int> again;
  for (int i = 0; i < 4; ++i) again.insert(*pool->Allocate());
  EXPECT_EQ(again.size(), 4u);
  EXPECT_FALSE(pool->Allocate().ok());
  // The keys can name blocks again.
  EXPECT_TRUE(pool->Publish("cached", *again.begin()));
  EXPECT_EQ(pool->DropCached(), 1);
}

TEST(KvBlockPoolTest, APublishedBlockStaysCachedAfterItsLastReference) {
  KvLayout layout = SmallLayout();
  auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * 3);
  int block = *pool->Allocate();
  pool->Data(block)[0] = 42;
  EXPECT_TRUE(pool->Publish("key-a", block));
  EXPECT_TRUE(pool->Publish("key-a", block));   // Already so: still true.
  EXPECT_FALSE(pool->Publish("key-b", block));  // One key per block.
  int other = *pool->Allocate();
  EXPECT_FALSE(pool->Publish("key-a", other));  // One block per key.
  pool->Unref(other);
  pool->Unref(block);
  // Unreferenced but cached: free for allocation, and found by its key.
  EXPECT_EQ(pool->used_blocks(), 0);
  EXPECT_EQ(pool->free_blocks(), 3);
  EXPECT_EQ(pool->cached_blocks(), 1);
  EXPECT_EQ(pool->Lookup("key-b"), -1);
  EXPECT_EQ(pool->Lookup("key-a"), block);
  EXPECT_EQ(pool->RefCount(block), 1);
  EXPECT_EQ(pool->Data(block)[0], 42);
  EXPECT_EQ(pool->free_blocks(), 2);
  // Shared by a second reader.
  EXPECT_EQ(pool->Lookup("key-a"), block);
  EXPECT_EQ(pool->RefCount(block), 2);
  pool->Unref(block);
  pool->Unref(block);
  EXPECT_EQ(pool->evicted_blocks(), 0);
}

TEST(KvBlockPoolTest, ACachedBlockCountsAsInUseUntilEvicted) {
  // An unbacked pool (a group leader's ids) caches as a backed one does; its
  // user keeps a cached id's KV while InUse says so.
  KvLayout layout = SmallLayout();
  auto pool = *KvBlockPool::CreateUnbacked(layout, 2);
  int cached = *pool->Allocate();
  int plain = *pool->Allocate();
  ASSERT_TRUE(pool->Publish("key", cached));
  pool->Unref(cached);
  pool->Unref(plain);
  EXPECT_TRUE(pool->InUse(cached));
  EXPECT_FALSE(pool->InUse(plain));
  EXPECT_EQ(pool->Lookup("key"), cached);
  pool->Unref(cached);
  EXPECT_EQ(*pool->Allocate(), plain);
  EXPECT_EQ(*pool->Allocate(), cached);  // Evicted, and in use again.
  EXPECT_EQ(pool->Lookup("key"), -1);
  pool->Unref(cached);
  EXPECT_FALSE(pool->InUse(cached));
}

TEST(KvBlockPoolTest, AllocateEvictsOnlyUnreferencedBlocksOldestFirst) {
  KvLayout layout = SmallLayout();
  auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * 4);
  std::vector<int> blocks;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(*pool->Allocate());
    ASSERT_TRUE(pool->Publish("key-" + std::to_string(i), blocks[i]));
  }
  // Released in the order 2, 0, 1; block 3 stays referenced.
  for (int i : {2, 0, 1}) pool->Unref(blocks[i]);
  EXPECT_EQ(pool->free_blocks(), 3);
  EXPECT_EQ(*pool->Allocate(), blocks[2]);
  EXPECT_EQ(pool->Lookup("key-2"), -1);  // Evicted: its key is gone.
  EXPECT_EQ(*pool->Allocate(), blocks[0]);
  EXPECT_EQ(*pool->Allocate(), blocks[1]);
  EXPECT_EQ(pool->evicted_blocks(), 3);
  // Everything is referenced now; block 3 (in use) is never taken.
  EXPECT_EQ(pool->Allocate().status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool->Lookup("key-3"), blocks[3]);
  EXPECT_EQ(pool->RefCount(blocks[3]), 2);
}

TEST(KvBlockPoolTest, NeverUsedBlocksGoBeforeCachedOnes) {
  KvLayout layout = SmallLayout();
  auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * 2);
  int cached = *pool->Allocate();
  ASSERT_TRUE(pool->Publish("cached", cached));
  pool->Unref(cached);
  int fresh = *pool->Allocate();
  EXPECT_NE(fresh, cached);
  EXPECT_EQ(pool->Lookup("cached"), cached);
  EXPECT_EQ(pool->evicted_blocks(), 0);
}

TEST(KvBlockPoolTest, BlocksInTheStoreAreEvictedBeforeThoseThatAreNot) {
  KvLayout layout = SmallLayout();
  auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * 3);
  std::vector<int> blocks;
  for (int i = 0; i < 3; ++i) {
    blocks.push_back(*pool->Allocate());
    ASSERT_TRUE(pool->Publish("key-" + std::to_string(i), blocks[i]));
  }
  pool->MarkStored("key-2");  // While referenced.
  for (int i = 0; i < 3; ++i) pool->Unref(blocks[i]);
  pool->MarkStored("key-1");  // While cached.
  pool->MarkStored("no-such-key");
  // Block 0 is the oldest but not stored: 1 goes first, then 2, then 0.
  EXPECT_EQ(*pool->Allocate(), blocks[1]);
  EXPECT_EQ(*pool->Allocate(), blocks[2]);
  EXPECT_EQ(*pool->Allocate(), blocks[0]);
  // A block taken by Lookup and released again goes to the back of the line.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool->Publish("again-" + std::to_string(i), blocks[i]));
    pool->MarkStored("again-" + std::to_string(i));
    pool->Unref(blocks[i]);
  }
  EXPECT_EQ(pool->Lookup("again-0"), blocks[0]);
  pool->Unref(blocks[0]);
  EXPECT_EQ(*pool->Allocate(), blocks[1]);
  EXPECT_EQ(*pool->Allocate(), blocks[2]);
  EXPECT_EQ(*pool->Allocate(), blocks[0]);
}

// A pool in memory the host cannot address (a GPU's, simulated): blocks go
// in and out only through ReadBlock and WriteBlock, whole and in place.
TEST(KvBlockPoolMemoryTest, APoolInOtherMemoryMovesWholeBlocks) {
  KvLayout layout = SmallLayout();
  auto memory = std::make_unique<testing::StagedMemory>(
      layout.BlockBytes() * 3 + layout.BlockBytes() / 2);
  testing::StagedMemory* staged = memory.get();
  auto pool = KvBlockPool::CreateIn(layout, std::move(memory));
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ((*pool)->capacity(), 3);  // Whole blocks only.
  EXPECT_FALSE((*pool)->host_accessible());
  std::vector<uint8_t> in(layout.BlockBytes()), out(layout.BlockBytes());
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE((*pool)->WriteBlock(2, in.data()).ok());
  ASSERT_TRUE((*pool)->ReadBlock(2, out.data()).ok());
  EXPECT_EQ(in, out);
  EXPECT_EQ(staged->copied_in(), static_cast<int64_t>(layout.BlockBytes()));
  EXPECT_EQ(staged->copied_out(), static_cast<int64_t>(layout.BlockBytes()));
  // The bytes sit where Data, K and V say.
  EXPECT_EQ((*pool)->Data(2)[5], in[5]);
  EXPECT_EQ((*pool)->K(2, 1)[0], in[layout.LayerBytes()]);
}

TEST(KvBlockPoolMemoryTest, MemoryForNoWholeBlockIsResourceExhausted) {
  KvLayout layout = SmallLayout();
  auto pool = KvBlockPool::CreateIn(
      layout, std::make_unique<testing::StagedMemory>(layout.BlockBytes() - 1));
  EXPECT_TRUE(absl::IsResourceExhausted(pool.status())) << pool.status();
}

}  // namespace
}  // namespace longctx
