#include "kvblock/hash128.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

// 1000 bytes with every value, so that words differ from each other.
std::string Pattern(size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(i * 7 + 1);
  return out;
}

std::string RandomBytes(size_t size, std::mt19937_64& rng) {
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// These values define the function: hashes are stored (KV block keys, model
// fingerprints), so a change here is a format change.
TEST(Hash128Test, KnownAnswersArePinned) {
  EXPECT_EQ(ComputeHash128("").ToHex(), "35ca45f801be9bcc85f815a0f7ca497e");
  EXPECT_EQ(ComputeHash128("a").ToHex(), "fb9925099540191c3d42734fbe4c6f61");
  EXPECT_EQ(ComputeHash128("abc").ToHex(), "747e7f85c001175adb89f335f4e575dc");
  EXPECT_EQ(ComputeHash128("01234567").ToHex(),
            "f38328fcac42e37d7e55d417ee2d0ee4");
  EXPECT_EQ(ComputeHash128(Pattern(63)).ToHex(),
            "ba4ea31c590ba75d605eb8062862b048");
  EXPECT_EQ(ComputeHash128(Pattern(64)).ToHex(),
            "a415f5f4ebd1d1dd4af6b110b871d1e2");
  EXPECT_EQ(ComputeHash128(Pattern(1000)).ToHex(),
            "e96edb2b480ff49de2edd69260b6814d");
  EXPECT_EQ(ComputeHash128("abc", 3, 1).ToHex(),
            "0e37ca0430e5e30f4ee333760732c90a");
  EXPECT_EQ(ComputeHash128("", 0, 0x123456789abcdef0ull).ToHex(),
            "eb20d2b60698d05d04297a3a593be4ae");
}

TEST(Hash128Test, HexIsHighThenLowAsOneNumber) {
  EXPECT_EQ((Hash128{0x0123456789abcdefull, 0xfedcba9876543210ull}).ToHex(),
            "fedcba98765432100123456789abcdef");
  EXPECT_EQ(Hash128{}.ToHex(), std::string(32, '0'));
}

TEST(Hash128Test, FromHexReadsWhatToHexWrites) {
  const Hash128 h{0x0123456789abcdefull, 0xfedcba9876543210ull};
  Hash128 parsed;
  ASSERT_TRUE(Hash128::FromHex(h.ToHex(), &parsed));
  EXPECT_EQ(parsed, h);
  ASSERT_TRUE(Hash128::FromHex("FEDCBA98765432100123456789ABCDEF", &parsed));
  EXPECT_EQ(parsed, h);
  for (const char* bad : {"", "fedcba98765432100123456789abcde",
                          "fedcba98765432100123456789abcdef0",
                          "fedcba98765432100123456789abcdeg"}) {
    Hash128 untouched{1, 2};
    EXPECT_FALSE(Hash128::FromHex(bad, &untouched)) << bad;
    EXPECT_EQ(untouched, (Hash128{1, 2}));
  }
}

TEST(Hash128Test, StreamingEqualsOneShotForEverySplit) {
  const std::string data = Pattern(200);
  for (size_t size : {0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 200}) {
    const std::string input = data.substr(0, size);
    const Hash128 expected = ComputeHash128(input.data(), size, 42);
    for (size_t a = 0; a <= size; ++a) {
      for (size_t b = a; b <= size; b += 5) {
        Hasher128 hasher(42);
        hasher.Update(input.data(), a);
        hasher.Update(input.data() + a, b - a);
        hasher.Update(input.data() + b, size - b);
        ASSERT_EQ(hasher.Finish(), expected)
            << "size " << size << " split at " << a << ", " << b;
        EXPECT_EQ(hasher.size(), size);
      }
    }
  }
}

TEST(Hash128Test, StreamingEqualsOneShotForRandomPieces) {
  std::mt19937_64 rng(7);
  const std::string data = RandomBytes(5000, rng);
  const Hash128 expected = ComputeHash128(data);
  for (int trial = 0; trial < 50; ++trial) {
    Hasher128 hasher;
    size_t offset = 0;
    while (offset < data.size()) {
      const size_t piece = std::min<size_t>(rng() % 150, data.size() - offset);
      hasher.Update(data.data() + offset, piece);
      offset += piece;
    }
    EXPECT_EQ(hasher.Finish(), expected) << "trial " << trial;
  }
}

TEST(Hash128Test, FinishDoesNotEndTheStream) {
  Hasher128 hasher;
  hasher.Update("hello ");
  EXPECT_EQ(hasher.Finish(), ComputeHash128("hello "));
  hasher.Update("world");
  EXPECT_EQ(hasher.Finish(), ComputeHash128("hello world"));
}

TEST(Hash128Test, UpdateWithHashAppendsItsCanonicalBytes) {
  const Hash128 previous{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
  std::string bytes;
  for (int i = 0; i < 16; ++i) bytes.push_back(static_cast<char>(i));
  Hasher128 hasher;
  hasher.Update(previous);
  hasher.Update("tokens");
  EXPECT_EQ(hasher.Finish(), ComputeHash128(bytes + "tokens"));

  Hasher128 words;
  words.UpdateU64(0x0706050403020100ull);
  EXPECT_EQ(words.Finish(), ComputeHash128(bytes.substr(0, 8)));
}

TEST(Hash128Test, TrailingZerosAndLengthAreDistinguished) {
  absl::flat_hash_set<Hash128> seen;
  std::string zeros;
  for (int size = 0; size <= 130; ++size) {
    EXPECT_TRUE(seen.insert(ComputeHash128(zeros)).second) << size;
    zeros.push_back('\0');
  }
}

TEST(Hash128Test, SeedChangesTheHash) {
  EXPECT_NE(ComputeHash128("abc", 3, 0), ComputeHash128("abc", 3, 1));
  EXPECT_NE(ComputeHash128("", 0, 0), ComputeHash128("", 0, 1));
}

// Flipping any one input bit changes each output bit with probability ~1/2:
// on average 64 of the 128 bits. With 3000 flips per length the mean has a
// standard deviation of ~0.1 bits and each bit's rate ~0.009, so the bounds
// below are many deviations wide yet catch a weak mixer. One-byte inputs have
// only 1024 distinct flips, too few for the per-bit bounds.
TEST(Hash128Test, OneBitFlipChangesHalfTheOutputBits) {
  std::mt19937_64 rng(2024);
  for (size_t size : {1, 4, 8, 13, 32, 64, 100, 1024}) {
    const int kTrials = 3000;
    std::vector<int> flips_per_bit(128, 0);
    double total_changed = 0;
    for (int t = 0; t < kTrials; ++t) {
      std::string input = RandomBytes(size, rng);
      const Hash128 before = ComputeHash128(input);
      const size_t bit = rng() % (size * 8);
      input[bit / 8] = static_cast<char>(input[bit / 8] ^ (1 << (bit % 8)));
      const Hash128 after = ComputeHash128(input);
      const uint64_t diff[2] = {before.lo ^ after.lo, before.hi ^ after.hi};
      for (int b = 0; b < 128; ++b) {
        flips_per_bit[b] += (diff[b / 64] >> (b % 64)) & 1;
      }
      total_changed +=
          __builtin_popcountll(diff[0]) + __builtin_popcountll(diff[1]);
    }
    const double mean = total_changed / kTrials;
    EXPECT_GT(mean, 63.0) << "size " << size;
    EXPECT_LT(mean, 65.0) << "size " << size;
    for (int b = 0; b < 128 && size > 1; ++b) {
      const double rate = static_cast<double>(flips_per_bit[b]) / kTrials;
      EXPECT_GT(rate, 0.44) << "size " << size << " output bit " << b;
      EXPECT_LT(rate, 0.56) << "size " << size << " output bit " << b;
    }
  }
}

TEST(Hash128Test, ChainedBlockKeysDependOnTheWholePrefix) {
  // h_i = H(h_{i-1} || ids of block i), as the KV cache keys its blocks.
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {1, 2, 3, 5};
  auto chain = [](Hash128 seed, const std::vector<int32_t>& block) {
    Hasher128 hasher;
    hasher.Update(seed);
    hasher.Update(block.data(), block.size() * sizeof(int32_t));
    return hasher.Finish();
  };
  const Hash128 root{1, 2};
  EXPECT_NE(chain(chain(root, a), a), chain(chain(root, b), a));
  EXPECT_EQ(chain(chain(root, a), b), chain(chain(root, a), b));
  EXPECT_NE(chain(root, a), chain(Hash128{1, 3}, a));
}

}  // namespace
}  // namespace longctx
