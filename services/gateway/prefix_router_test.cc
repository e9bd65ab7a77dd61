#include "services/gateway/prefix_router.h"

#include <vector>

#include "gtest/gtest.h"
#include "kvblock/block_keys.h"

namespace longctx {
namespace {

constexpr Hash128 kModel{7, 9};

std::string Seed() { return BlockKeySeed(kModel, ""); }

std::vector<int32_t> Tokens(int n, int salt) {
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = (i * 31 + salt) % 1000;
  return tokens;
}

TEST(PrefixRouterTest, FindsTheGroupOfTheLongestKnownPrefix) {
  PrefixRouter router(1000);
  const auto document = Tokens(64, 1);
  const auto keys = ChainedBlockKeys(Seed(), document, 8);  // 8 keys.
  EXPECT_EQ(router.Find(keys).group, -1);
  router.Remember(absl::MakeConstSpan(keys).subspan(0, 3), 1);
  router.Remember(keys, 0);
  EXPECT_EQ(router.Find(keys).group, 0);
  EXPECT_EQ(router.Find(keys).blocks, 8);

  // A prompt that starts with the document and goes on is found by its first
  // 8 keys; one that shares only 2 blocks is found by those.
  auto longer = document;
  for (int32_t t : Tokens(40, 2)) longer.push_back(t);
  const auto longer_keys = ChainedBlockKeys(Seed(), longer, 8);
  EXPECT_EQ(router.Find(longer_keys).blocks, 8);
  auto forked = document;
  forked[20] += 1;  // Block 2 differs.
  const auto forked_keys = ChainedBlockKeys(Seed(), forked, 8);
  EXPECT_EQ(router.Find(forked_keys).group, 0);
  EXPECT_EQ(router.Find(forked_keys).blocks, 2);

  // Another group given a longer prompt takes over the shared keys.
  router.Remember(longer_keys, 2);
  EXPECT_EQ(router.Find(keys).group, 2);
  EXPECT_EQ(router.Find(forked_keys).group, 2);
  // Other models' and other namespaces' keys never match.
  EXPECT_EQ(router.Find(ChainedBlockKeys(BlockKeySeed({8, 9}, ""), document, 8))
                .group,
            -1);
  EXPECT_EQ(
      router.Find(ChainedBlockKeys(BlockKeySeed(kModel, "t2"), document, 8))
          .group,
      -1);
}

TEST(PrefixRouterTest, ForgetsTheLeastRecentlyGivenKeysFirst) {
  PrefixRouter router(10);
  const auto a = ChainedBlockKeys(Seed(), Tokens(48, 3), 8);  // 6 keys.
  const auto b = ChainedBlockKeys(Seed(), Tokens(48, 4), 8);  // 6 keys.
  router.Remember(a, 0);
  router.Remember(b, 1);
  EXPECT_EQ(router.size(), 10u);
  // a's first two keys went: its longest prefix is still known, its shortest
  // prefixes are not.
  EXPECT_EQ(router.Find(a).group, 0);
  EXPECT_EQ(router.Find(absl::MakeConstSpan(a).subspan(0, 2)).group, -1);
  EXPECT_EQ(router.Find(b).blocks, 6);
  // Giving `a` again makes it the most recent: b's oldest keys go now.
  router.Remember(a, 0);
  EXPECT_EQ(router.Find(absl::MakeConstSpan(b).subspan(0, 2)).group, -1);
  EXPECT_EQ(router.Find(absl::MakeConstSpan(a).subspan(0, 2)).group, 0);
}

}  // namespace
}  // namespace longctx
