#include "services/worker/kv_block_pool.h"

#include <set>

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

}  // namespace
}  // namespace longctx
