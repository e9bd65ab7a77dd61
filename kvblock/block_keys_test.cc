#include "kvblock/block_keys.h"

#include <random>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

std::vector<int32_t> RandomTokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 128256);
  return tokens;
}

constexpr Hash128 kFingerprint{0x0123456789abcdefull, 0xfedcba9876543210ull};

TEST(ChainedBlockKeysTest, OnlyFullBlocksGetKeys) {
  const std::vector<int32_t> tokens = RandomTokens(3 * 7 + 5, 1);
  EXPECT_EQ(ChainedBlockKeys(kFingerprint, tokens, 7).size(), 3u);
  EXPECT_EQ(
      ChainedBlockKeys(kFingerprint, absl::MakeSpan(tokens).subspan(0, 6), 7)
          .size(),
      0u);
  EXPECT_TRUE(ChainedBlockKeys(kFingerprint, tokens, 0).empty());
  EXPECT_TRUE(ChainedBlockKeys(kFingerprint, tokens, -3).empty());
}

TEST(ChainedBlockKeysTest, PartialLastBlockDoesNotChangeEarlierKeys) {
  const std::vector<int32_t> tokens = RandomTokens(4 * 13 + 11, 2);
  const std::vector<Hash128> with_tail =
      ChainedBlockKeys(kFingerprint, tokens, 13);
  const std::vector<Hash128> without_tail = ChainedBlockKeys(
      kFingerprint, absl::MakeConstSpan(tokens).subspan(0, 4 * 13), 13);
  EXPECT_EQ(with_tail, without_tail);
}

TEST(ChainedBlockKeysTest, EqualPrefixesGiveEqualKeys) {
  std::vector<int32_t> a = RandomTokens(5 * 17, 3);
  std::vector<int32_t> b(a.begin(), a.begin() + 3 * 17);
  const std::vector<int32_t> tail = RandomTokens(2 * 17 + 4, 4);
  b.insert(b.end(), tail.begin(), tail.end());
  const std::vector<Hash128> ka = ChainedBlockKeys(kFingerprint, a, 17);
  const std::vector<Hash128> kb = ChainedBlockKeys(kFingerprint, b, 17);
  ASSERT_EQ(ka.size(), 5u);
  ASSERT_EQ(kb.size(), 5u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ka[i], kb[i]) << "block " << i;
  for (int i = 3; i < 5; ++i) EXPECT_NE(ka[i], kb[i]) << "block " << i;
}

TEST(ChainedBlockKeysTest, ChangeInBlockIChangesKeysFromIOn) {
  const int kBlock = 9;
  const int kBlocks = 6;
  const std::vector<int32_t> tokens = RandomTokens(kBlocks * kBlock + 2, 5);
  const std::vector<Hash128> base = ChainedBlockKeys(kFingerprint, tokens, 9);
  for (int i = 0; i < kBlocks; ++i) {
    std::vector<int32_t> changed = tokens;
    changed[i * kBlock + (i * 5) % kBlock] ^= 1;  // One bit of one token.
    const std::vector<Hash128> keys =
        ChainedBlockKeys(kFingerprint, changed, kBlock);
    for (int j = 0; j < kBlocks; ++j) {
      if (j < i) {
        EXPECT_EQ(keys[j], base[j]) << "changed block " << i << ", key " << j;
      } else {
        EXPECT_NE(keys[j], base[j]) << "changed block " << i << ", key " << j;
      }
    }
  }
}

TEST(ChainedBlockKeysTest, DifferentFingerprintsNeverCollideInASample) {
  const std::vector<int32_t> tokens = RandomTokens(4 * 16, 6);
  absl::flat_hash_set<Hash128> seen;
  std::mt19937_64 rng(7);
  const int kModels = 2000;
  for (int m = 0; m < kModels; ++m) {
    const Hash128 fingerprint{rng(), rng()};
    for (const Hash128& key : ChainedBlockKeys(fingerprint, tokens, 16)) {
      EXPECT_TRUE(seen.insert(key).second) << "model " << m;
    }
  }
  EXPECT_EQ(seen.size(), 4u * kModels);
}

TEST(ChainedBlockKeysTest, TokenIdsAreHashedAsLittleEndianInt32) {
  const std::vector<int32_t> tokens = {1, -2, 0x01020304};
  Hasher128 hasher;
  hasher.Update(kFingerprint);
  const unsigned char bytes[] = {1,    0,    0, 0, 0xfe, 0xff,
                                 0xff, 0xff, 4, 3, 2,    1};
  hasher.Update(bytes, sizeof(bytes));
  const std::vector<Hash128> keys = ChainedBlockKeys(kFingerprint, tokens, 3);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0], hasher.Finish());
}

// Keys are stored across restarts: the function must never change silently.
TEST(ChainedBlockKeysTest, KnownAnswerIsPinned) {
  std::vector<int32_t> tokens(10);
  for (int i = 0; i < 10; ++i) tokens[i] = i * 1000 - 3;
  const std::vector<Hash128> keys = ChainedBlockKeys(kFingerprint, tokens, 4);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].ToHex(), "e71e393ec6043dc21558c30c0b23e806");
  EXPECT_EQ(keys[1].ToHex(), "9c8a9504447b5c5661351c30fcf39bb7");
}

TEST(KeyBytesTest, IsLoThenHiLittleEndian) {
  const std::string bytes = KeyBytes(kFingerprint);
  ASSERT_EQ(bytes.size(), 16u);
  EXPECT_EQ(bytes, std::string("\xef\xcd\xab\x89\x67\x45\x23\x01"
                               "\x10\x32\x54\x76\x98\xba\xdc\xfe",
                               16));
}

}  // namespace
}  // namespace longctx
