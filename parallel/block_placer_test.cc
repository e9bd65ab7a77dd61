#include "parallel/block_placer.h"

#include <vector>

#include "gtest/gtest.h"

namespace longctx {
namespace {

TEST(BlockPlacerTest, DealsZigZagAndFallsBackWhenARankIsFull) {
  BlockPlacer placer(2, 4);
  auto places = placer.PlaceBlocks(4);
  ASSERT_TRUE(places.ok());
  std::vector<int> ranks;
  for (const auto& p : *places) ranks.push_back(p.rank);
  EXPECT_EQ(ranks, (std::vector<int>{0, 1, 1, 0}));
  // One block goes to the rank with the most room.
  placer.Release((*places)[0]);
  auto one = placer.PlaceBlocks(1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ((*one)[0].rank, 0);
  // Two free blocks left on each rank.
  EXPECT_EQ(placer.total_free(), 4);
  EXPECT_EQ(placer.PlaceBlocks(5).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(placer.total_free(), 4);
  auto rest = placer.PlaceBlocks(4);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(placer.total_free(), 0);
}

}  // namespace
}  // namespace longctx
