#include "kvblock/block_keys.h"

#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "kvblock/hash128.h"

namespace longctx {
namespace {

std::vector<int32_t> RandomTokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 128256);
  return tokens;
}

constexpr Hash128 kFingerprint{0x0123456789abcdefull, 0xfedcba9876543210ull};

std::string Seed() { return BlockKeySeed(kFingerprint, ""); }

TEST(ChainedBlockKeysTest, OnlyFullBlocksGetKeys) {
  const std::vector<int32_t> tokens = RandomTokens(3 * 7 + 5, 1);
  const std::vector<BlockKey> ids = ChainedBlockKeys(Seed(), tokens, 7);
  ASSERT_EQ(ids.size(), 3u);
  for (const BlockKey& id : ids) {
    EXPECT_EQ(id.key.size(), kBlockKeyBytes);
    EXPECT_EQ(id.token_digest.size(), kBlockKeyBytes);
  }
  EXPECT_TRUE(ChainedBlockKeys(Seed(), absl::MakeSpan(tokens).subspan(0, 6), 7)
                  .empty());
  EXPECT_TRUE(ChainedBlockKeys(Seed(), tokens, 0).empty());
  EXPECT_TRUE(ChainedBlockKeys(Seed(), tokens, -3).empty());
  EXPECT_TRUE(ChainedBlockKeys("short seed", tokens, 7).empty());
}

TEST(ChainedBlockKeysTest, PartialLastBlockDoesNotChangeEarlierKeys) {
  const std::vector<int32_t> tokens = RandomTokens(4 * 13 + 11, 2);
  EXPECT_EQ(ChainedBlockKeys(Seed(), tokens, 13),
            ChainedBlockKeys(
                Seed(), absl::MakeConstSpan(tokens).subspan(0, 4 * 13), 13));
}

TEST(ChainedBlockKeysTest, EqualPrefixesGiveEqualKeys) {
  std::vector<int32_t> a = RandomTokens(5 * 17, 3);
  std::vector<int32_t> b(a.begin(), a.begin() + 3 * 17);
  const std::vector<int32_t> tail = RandomTokens(2 * 17 + 4, 4);
  b.insert(b.end(), tail.begin(), tail.end());
  const std::vector<BlockKey> ka = ChainedBlockKeys(Seed(), a, 17);
  const std::vector<BlockKey> kb = ChainedBlockKeys(Seed(), b, 17);
  ASSERT_EQ(ka.size(), 5u);
  ASSERT_EQ(kb.size(), 5u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ka[i], kb[i]) << "block " << i;
  for (int i = 3; i < 5; ++i) EXPECT_NE(ka[i].key, kb[i].key) << "block " << i;
}

TEST(ChainedBlockKeysTest, ChangeInBlockIChangesKeysFromIOn) {
  const int kBlock = 9;
  const int kBlocks = 6;
  const std::vector<int32_t> tokens = RandomTokens(kBlocks * kBlock + 2, 5);
  const std::vector<BlockKey> base = ChainedBlockKeys(Seed(), tokens, kBlock);
  for (int i = 0; i < kBlocks; ++i) {
    std::vector<int32_t> changed = tokens;
    changed[i * kBlock + (i * 5) % kBlock] ^= 1;  // One bit of one token.
    const std::vector<BlockKey> ids = ChainedBlockKeys(Seed(), changed, kBlock);
    for (int j = 0; j < kBlocks; ++j) {
      if (j < i) {
        EXPECT_EQ(ids[j], base[j]) << "changed block " << i << ", key " << j;
      } else {
        EXPECT_NE(ids[j].key, base[j].key)
            << "changed block " << i << ", key " << j;
        // Only the changed block's own tokens differ.
        EXPECT_EQ(ids[j].token_digest == base[j].token_digest, j != i)
            << "changed block " << i << ", digest " << j;
      }
    }
  }
}

TEST(ChainedBlockKeysTest, ModelsAndNamespacesNeverShareKeysInASample) {
  const std::vector<int32_t> tokens = RandomTokens(4 * 16, 6);
  absl::flat_hash_set<std::string> seen;
  std::mt19937_64 rng(7);
  const int kModels = 500;
  const std::vector<std::string> namespaces = {"", "a", "b", "tenant-a",
                                               std::string("a\0", 2)};
  for (int m = 0; m < kModels; ++m) {
    const Hash128 fingerprint{rng(), rng()};
    for (const std::string& ns : namespaces) {
      for (const BlockKey& id :
           ChainedBlockKeys(BlockKeySeed(fingerprint, ns), tokens, 16)) {
        EXPECT_TRUE(seen.insert(id.key).second) << "model " << m;
      }
    }
  }
  EXPECT_EQ(seen.size(), 4u * kModels * namespaces.size());
}

TEST(ChainedBlockKeysTest, TokenDigestIsOfLittleEndianInt32s) {
  const std::vector<int32_t> tokens = {1, -2, 0x01020304};
  const std::vector<BlockKey> ids = ChainedBlockKeys(Seed(), tokens, 3);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(ids[0].token_digest, TokenDigest(tokens));
  // SHA-256 of 01000000 feffffff 04030201 (Python's hashlib).
  EXPECT_EQ(absl::BytesToHexString(TokenDigest(tokens)),
            "6842fbd017dc4705a6401f5a0e4db51bbd3167cc224da5a28f51e3c5b6ec4df7");
}

// Keys are stored across restarts: the function must never change silently.
// The values are SHA-256 computed independently (Python's hashlib).
TEST(ChainedBlockKeysTest, KnownAnswerIsPinned) {
  EXPECT_EQ(absl::BytesToHexString(Seed()),
            "fdbd934b9c422fc3e346571a351d0cc829ba4c2a446f25c2225c82634e54667f");
  EXPECT_EQ(absl::BytesToHexString(BlockKeySeed(kFingerprint, "tenant-a")),
            "d6abd15f6d0a0609a562eacc6a9b97f9e933e5d308c75310f843b2bcfaa42c8c");
  std::vector<int32_t> tokens(10);
  for (int i = 0; i < 10; ++i) tokens[i] = i * 1000 - 3;
  const std::vector<BlockKey> ids = ChainedBlockKeys(Seed(), tokens, 4);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(absl::BytesToHexString(ids[0].key),
            "04674ee6ec055e64ead612dcd7190ff977442c2c6e299d98dbc9a7bff96810fe");
  EXPECT_EQ(absl::BytesToHexString(ids[0].token_digest),
            "1d6ed5796a0943e45ad805ed0b7b2aa7f4305b4cf77a03a6236a4f25f5546893");
  EXPECT_EQ(absl::BytesToHexString(ids[1].key),
            "6aafdb91d0e81242c7aaa48bf8edd951b9afa5036846de598c2530a38f5595e2");
}

// The attack that Hash128 keys allowed (issue #20): from the public model
// fingerprint, build a second block whose Hash128 chained key equals the
// victim's. Hash128 feeds word j of its input into lane j % 8 through a
// bijection, so changing word 2 (tokens 0 and 1) and compensating in word 10
// (tokens 16 and 17, the same lane, one stripe later) restores the lane. The
// constants are Hash128's published definition (hash128.cc, version 1).
uint64_t Rotl(uint64_t x, int bits) { return (x << bits) | (x >> (64 - bits)); }
uint64_t Mix(uint64_t x) {
  x ^= x >> 32;
  x *= 0xef2bcd89ac175b53ull;
  x ^= x >> 29;
  x *= 0xfc55f1a92a5dd099ull;
  x ^= x >> 32;
  return x;
}
constexpr uint64_t kLaneMultiplier = 0x930f3d70d6db09a5ull;

uint64_t Word(const std::vector<int32_t>& tokens, int first) {
  return static_cast<uint32_t>(tokens[first]) |
         static_cast<uint64_t>(static_cast<uint32_t>(tokens[first + 1])) << 32;
}

// The old key: Hash128 of the previous key's 16 bytes then the token bytes.
Hash128 OldKey(const Hash128& previous, const std::vector<int32_t>& tokens) {
  Hasher128 hasher;
  hasher.Update(previous);
  for (int32_t t : tokens) {
    const uint32_t id = static_cast<uint32_t>(t);
    const unsigned char bytes[4] = {static_cast<unsigned char>(id),
                                    static_cast<unsigned char>(id >> 8),
                                    static_cast<unsigned char>(id >> 16),
                                    static_cast<unsigned char>(id >> 24)};
    hasher.Update(bytes, 4);
  }
  return hasher.Finish();
}

TEST(ChainedBlockKeysTest, Hash128CollidingBlocksGetDistinctKeys) {
  const std::vector<int32_t> victim = RandomTokens(256, 8);
  std::vector<int32_t> forged = victim;
  forged[0] = 17;
  forged[1] = 42;
  const uint64_t lane2 = Mix(0x9e3779b97f4a7c15ull * 3);  // Lane 2's start.
  const uint64_t after_victim =
      (Rotl(lane2, 27) ^ Word(victim, 0)) * kLaneMultiplier;
  const uint64_t after_forged =
      (Rotl(lane2, 27) ^ Word(forged, 0)) * kLaneMultiplier;
  const uint64_t word10 =
      Word(victim, 16) ^ Rotl(after_victim, 27) ^ Rotl(after_forged, 27);
  forged[16] = static_cast<int32_t>(static_cast<uint32_t>(word10));
  forged[17] = static_cast<int32_t>(static_cast<uint32_t>(word10 >> 32));
  ASSERT_NE(forged, victim);
  // The old scheme gives both blocks one key ...
  ASSERT_EQ(OldKey(kFingerprint, victim), OldKey(kFingerprint, forged));
  // ... the new one does not.
  const std::vector<BlockKey> a = ChainedBlockKeys(Seed(), victim, 256);
  const std::vector<BlockKey> b = ChainedBlockKeys(Seed(), forged, 256);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_NE(a[0].key, b[0].key);
  EXPECT_NE(a[0].token_digest, b[0].token_digest);
}

}  // namespace
}  // namespace longctx
