#include "kvblock/kv_block_format.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

constexpr Hash128 kFingerprint{0x1122334455667788ull, 0x99aabbccddeeff00ull};

// The key and token digest of a block of 13 tokens.
const BlockKey& Id() {
  static const BlockKey* id = [] {
    std::vector<int32_t> tokens(13);
    for (int i = 0; i < 13; ++i) tokens[i] = 100 + 7 * i;
    return new BlockKey(
        ChainedBlockKeys(BlockKeySeed(kFingerprint, "ns"), tokens, 13)[0]);
  }();
  return *id;
}

// An awkward layout: odd layer count, heads, head_dim and block size.
KvLayout AwkwardLayout(KvDtype dtype = KvDtype::kF16) {
  KvLayout layout;
  layout.num_layers = 5;
  layout.num_kv_heads = 3;
  layout.head_dim = 7;
  layout.block_size = 13;
  layout.dtype = dtype;
  return layout;
}

std::vector<uint8_t> RandomBlock(const KvLayout& layout, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> block(layout.BlockBytes());
  for (uint8_t& b : block) b = static_cast<uint8_t>(rng());
  return block;
}

TEST(KvBlockFormatTest, RoundTripRestoresTheBlockAndItsHeader) {
  for (KvDtype dtype : {KvDtype::kF16, KvDtype::kF32, KvDtype::kBf16}) {
    const KvLayout layout = AwkwardLayout(dtype);
    const std::vector<uint8_t> block = RandomBlock(layout, 11);
    absl::StatusOr<std::vector<std::string>> parts =
        EncodeKvBlock(layout, kFingerprint, Id(), 9, block.data());
    ASSERT_TRUE(parts.ok()) << parts.status();
    ASSERT_EQ(parts->size(), 1u + layout.num_layers);
    EXPECT_EQ((*parts)[0].size(), KvBlockHeaderBytes(layout.num_layers));
    for (int l = 0; l < layout.num_layers; ++l) {
      EXPECT_EQ((*parts)[1 + l].size(), layout.LayerBytes());
    }
    std::vector<uint8_t> restored(layout.BlockBytes(), 0);
    absl::StatusOr<KvBlockHeader> header =
        DecodeKvBlockInto(*parts, layout, kFingerprint, Id(), restored.data());
    ASSERT_TRUE(header.ok()) << header.status();
    EXPECT_EQ(restored, block);
    EXPECT_EQ(header->token_count, 9);
    EXPECT_EQ(header->version, kKvBlockFormatVersion);
    EXPECT_EQ(header->fingerprint, kFingerprint);
    EXPECT_EQ(header->layout.dtype, dtype);
    EXPECT_EQ(header->layer_checksums.size(), 5u);
  }
}

TEST(KvBlockFormatTest, LayerPartIsThatLayersKThenV) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 12);
  std::vector<std::string> parts =
      *EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data());
  const size_t layer_bytes = layout.LayerBytes();
  for (int l = 0; l < layout.num_layers; ++l) {
    EXPECT_EQ(parts[1 + l],
              std::string(
                  reinterpret_cast<const char*>(block.data()) + l * layer_bytes,
                  layer_bytes));
  }
}

TEST(KvBlockFormatTest, HeaderStartsWithMagicAndVersionLittleEndian) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 13);
  const std::string header =
      (*EncodeKvBlock(layout, kFingerprint, Id(), 1, block.data()))[0];
  EXPECT_EQ(header.substr(0, 8), std::string("LCKV\x02\x00\x00\x00", 8));
  EXPECT_EQ(header.substr(8, 8),
            std::string("\x88\x77\x66\x55\x44\x33\x22\x11", 8));
}

TEST(KvBlockFormatTest, FlippedByteInALayerIsDataLossForThatLayerOnly) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 14);
  const std::vector<std::string> parts =
      *EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data());
  const KvBlockHeader header =
      *ParseKvBlockHeader(parts[0], layout, kFingerprint, Id());
  std::mt19937 rng(15);
  for (int bad = 0; bad < layout.num_layers; ++bad) {
    std::vector<std::string> corrupted = parts;
    std::string& layer = corrupted[1 + bad];
    layer[rng() % layer.size()] ^= static_cast<char>(1 + rng() % 255);
    for (int l = 0; l < layout.num_layers; ++l) {
      absl::Status status = VerifyLayerPart(header, l, corrupted[1 + l]);
      if (l == bad) {
        EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
        EXPECT_THAT(status.message(), HasSubstr("layer " + std::to_string(l)));
      } else {
        EXPECT_TRUE(status.ok()) << "layer " << l << ": " << status;
      }
    }
    std::vector<uint8_t> out(layout.BlockBytes(), 0xab);
    absl::StatusOr<KvBlockHeader> decoded =
        DecodeKvBlockInto(corrupted, layout, kFingerprint, Id(), out.data());
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(decoded.status().message(),
                HasSubstr("layer " + std::to_string(bad)));
    // Layers are verified as they are copied: the decode stops at the bad
    // one, and nothing after it is written.
    const size_t after = (bad + 1) * layout.LayerBytes();
    EXPECT_EQ(std::vector<uint8_t>(out.begin() + after, out.end()),
              std::vector<uint8_t>(layout.BlockBytes() - after, 0xab))
        << "a decode wrote past the layer that failed";
  }
}

// A block received in place (layers straight into the block) verifies as the
// decode would: a flipped byte in any layer, or a header of another block or
// model, is refused.
TEST(KvBlockFormatTest, InPlaceVerificationChecksEveryLayerAndTheHeader) {
  for (KvDtype dtype : {KvDtype::kF16, KvDtype::kF32, KvDtype::kBf16}) {
    const KvLayout layout = AwkwardLayout(dtype);
    std::vector<uint8_t> block = RandomBlock(layout, 21);
    const std::vector<std::string> parts =
        *EncodeKvBlock(layout, kFingerprint, Id(), 11, block.data());
    absl::StatusOr<KvBlockHeader> header = VerifyKvBlockInPlace(
        parts[0], layout, kFingerprint, Id(), block.data());
    ASSERT_TRUE(header.ok()) << header.status();
    EXPECT_EQ(header->token_count, 11);
    std::mt19937 rng(22);
    for (int bad = 0; bad < layout.num_layers; ++bad) {
      std::vector<uint8_t> corrupted = block;
      corrupted[bad * layout.LayerBytes() + rng() % layout.LayerBytes()] ^=
          static_cast<uint8_t>(1 + rng() % 255);
      absl::StatusOr<KvBlockHeader> refused = VerifyKvBlockInPlace(
          parts[0], layout, kFingerprint, Id(), corrupted.data());
      EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
      EXPECT_THAT(refused.status().message(),
                  HasSubstr("layer " + std::to_string(bad)));
    }
    EXPECT_FALSE(VerifyKvBlockInPlace(parts[0], layout, Hash128{1, 2}, Id(),
                                      block.data())
                     .ok());
    std::string header_flipped = parts[0];
    header_flipped[header_flipped.size() / 2] ^= 1;
    EXPECT_FALSE(VerifyKvBlockInPlace(header_flipped, layout, kFingerprint,
                                      Id(), block.data())
                     .ok());
    EXPECT_FALSE(
        VerifyKvBlockInPlace(parts[0], layout, kFingerprint, Id(), nullptr)
            .ok());
  }
}

TEST(KvBlockFormatTest, PiecesDecodeAsTheJoinedPartsHoweverSplit) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 21);
  const std::vector<std::string> parts =
      *EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data());
  std::mt19937 rng(22);
  for (int trial = 0; trial < 20; ++trial) {
    // Every part cut at random points, empty pieces included.
    std::vector<std::vector<absl::string_view>> pieces(parts.size());
    for (size_t p = 0; p < parts.size(); ++p) {
      const absl::string_view part = parts[p];
      size_t at = 0;
      while (at < part.size()) {
        const size_t n = std::min<size_t>(rng() % 97, part.size() - at);
        pieces[p].push_back(part.substr(at, n));
        at += n;
      }
    }
    std::vector<KvBlockPiecesPart> spans(pieces.begin(), pieces.end());
    std::vector<uint8_t> out(layout.BlockBytes(), 0);
    absl::StatusOr<KvBlockHeader> decoded =
        DecodeKvBlockPiecesInto(spans, layout, kFingerprint, Id(), out.data());
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->token_count, 13);
    EXPECT_EQ(out, block);
    // One byte flipped in one piece of one layer fails that layer.
    const int bad = 1 + static_cast<int>(rng() % layout.num_layers);
    std::string corrupted = parts[bad];
    corrupted[rng() % corrupted.size()] ^= 0x10;
    std::vector<std::vector<absl::string_view>> bad_pieces = pieces;
    bad_pieces[bad] = {absl::string_view(corrupted).substr(0, 5),
                       absl::string_view(corrupted).substr(5)};
    std::vector<KvBlockPiecesPart> bad_spans(bad_pieces.begin(),
                                             bad_pieces.end());
    decoded = DecodeKvBlockPiecesInto(bad_spans, layout, kFingerprint, Id(),
                                      out.data());
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(decoded.status().message(),
                HasSubstr("layer " + std::to_string(bad - 1)));
  }
}

TEST(KvBlockFormatTest, LayerPartsSwappedOrTruncatedAreDataLoss) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 16);
  const std::vector<std::string> parts =
      *EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data());
  const KvBlockHeader header =
      *ParseKvBlockHeader(parts[0], layout, kFingerprint, Id());
  EXPECT_EQ(VerifyLayerPart(header, 1, parts[3]).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(VerifyLayerPart(header, 2, parts[3].substr(1)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(VerifyLayerPart(header, 5, parts[3]).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyLayerPart(header, -1, parts[3]).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KvBlockFormatTest, WrongFingerprintOrLayoutIsFailedPrecondition) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 17);
  const std::vector<std::string> parts =
      *EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data());
  Hash128 other_model = kFingerprint;
  other_model.hi ^= 1;
  EXPECT_EQ(
      ParseKvBlockHeader(parts[0], layout, other_model, Id()).status().code(),
      absl::StatusCode::kFailedPrecondition);

  std::vector<KvLayout> others(6, layout);
  others[0].num_layers = 6;
  others[1].num_kv_heads = 1;
  others[2].head_dim = 8;
  others[3].block_size = 16;
  others[4].dtype = KvDtype::kF32;
  // Same size as the block's f16, other numbers: never served as bf16.
  others[5].dtype = KvDtype::kBf16;
  for (const KvLayout& other : others) {
    absl::Status status =
        ParseKvBlockHeader(parts[0], other, kFingerprint, Id()).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_THAT(status.message(), HasSubstr("layout"));
    std::vector<uint8_t> out(other.BlockBytes());
    EXPECT_EQ(DecodeKvBlockInto(parts, other, kFingerprint, Id(), out.data())
                  .status()
                  .code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

TEST(KvBlockFormatTest, HeaderRecordsTheKeyAndTokenDigest) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 23);
  const std::string header =
      (*EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data()))[0];
  EXPECT_EQ(header.substr(24, 32), Id().key);
  EXPECT_EQ(header.substr(56, 32), Id().token_digest);
  absl::StatusOr<KvBlockHeader> parsed =
      ParseKvBlockHeader(header, layout, kFingerprint, Id());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->id, Id());
}

// A block read under a key it was not written for, or whose tokens are not
// the prompt's, is foreign: refused before a byte of it is used.
TEST(KvBlockFormatTest, OtherKeyOrTokensIsFailedPrecondition) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 24);
  const std::vector<std::string> parts =
      *EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data());
  BlockKey other_key = Id();
  other_key.key[5] ^= 1;
  BlockKey other_tokens = Id();
  other_tokens.token_digest[31] ^= 0x80;
  for (const BlockKey& expected : {other_key, other_tokens}) {
    std::vector<uint8_t> out(layout.BlockBytes(), 0xcd);
    absl::Status status =
        DecodeKvBlockInto(parts, layout, kFingerprint, expected, out.data())
            .status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_EQ(out, std::vector<uint8_t>(layout.BlockBytes(), 0xcd));
  }
  EXPECT_THAT(ParseKvBlockHeader(parts[0], layout, kFingerprint, other_key)
                  .status()
                  .message(),
              HasSubstr("another key"));
  EXPECT_THAT(ParseKvBlockHeader(parts[0], layout, kFingerprint, other_tokens)
                  .status()
                  .message(),
              HasSubstr("other tokens"));
  BlockKey short_key = Id();
  short_key.key.resize(16);
  EXPECT_EQ(EncodeKvBlock(layout, kFingerprint, short_key, 13, block.data())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KvBlockFormatTest, MissingOrExtraPartsAreInvalidArgument) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 18);
  std::vector<std::string> parts =
      *EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data());
  std::vector<uint8_t> out(layout.BlockBytes());
  std::vector<std::string> fewer(parts.begin(), parts.end() - 1);
  EXPECT_EQ(DecodeKvBlockInto(fewer, layout, kFingerprint, Id(), out.data())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  parts.push_back("extra");
  EXPECT_EQ(DecodeKvBlockInto(parts, layout, kFingerprint, Id(), out.data())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeKvBlockInto({}, layout, kFingerprint, Id(), out.data())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KvBlockFormatTest, EncodeRejectsBadLayoutsAndTokenCounts) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 19);
  EXPECT_EQ(EncodeKvBlock(layout, kFingerprint, Id(), 0, block.data())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeKvBlock(layout, kFingerprint, Id(), 14, block.data())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      EncodeKvBlock(layout, kFingerprint, Id(), 1, nullptr).status().code(),
      absl::StatusCode::kInvalidArgument);
  KvLayout empty = layout;
  empty.num_layers = 0;
  EXPECT_EQ(
      EncodeKvBlock(empty, kFingerprint, Id(), 1, block.data()).status().code(),
      absl::StatusCode::kInvalidArgument);
  KvLayout negative = layout;
  negative.head_dim = -7;
  EXPECT_EQ(EncodeKvBlock(negative, kFingerprint, Id(), 1, block.data())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KvBlockFormatTest, CorruptedHeaderByteIsAnErrorNeverAMatch) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 20);
  const std::string header =
      (*EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data()))[0];
  for (size_t i = 0; i < header.size(); ++i) {
    std::string bad = header;
    bad[i] ^= 0x20;
    absl::Status status =
        ParseKvBlockHeader(bad, layout, kFingerprint, Id()).status();
    EXPECT_FALSE(status.ok()) << "byte " << i;
    // Past magic and version, and but for the layer count, only the checksum
    // can tell.
    if (i >= 8 && (i < 88 || i >= 92)) {
      EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << "byte " << i;
    }
  }
}

TEST(KvBlockFormatTest, TruncatedHeaderIsInvalidArgument) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 21);
  const std::string header =
      (*EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data()))[0];
  for (size_t n = 0; n < header.size(); ++n) {
    EXPECT_EQ(
        ParseKvBlockHeader(header.substr(0, n), layout, kFingerprint, Id())
            .status()
            .code(),
        absl::StatusCode::kInvalidArgument)
        << n << " bytes";
  }
  EXPECT_EQ(ParseKvBlockHeader(header + "x", layout, kFingerprint, Id())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Arbitrary bytes must give an error, never a crash or an out-of-bounds read
// (run under ASan to see the latter). Half the samples carry a valid magic,
// version and layer count so parsing gets past the first checks.
TEST(KvBlockFormatTest, RandomBytesAreRejectedWithoutCrashing) {
  const KvLayout layout = AwkwardLayout();
  const std::vector<uint8_t> block = RandomBlock(layout, 22);
  const std::string valid =
      (*EncodeKvBlock(layout, kFingerprint, Id(), 13, block.data()))[0];
  for (uint32_t seed = 0; seed < 1000; ++seed) {
    std::mt19937 rng(seed);
    const size_t size = rng() % (2 * valid.size());
    std::string bytes(size, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    if (seed % 2 == 1) {
      bytes.resize(valid.size());
      bytes.replace(0, 8, valid, 0, 8);    // Magic and version.
      bytes.replace(88, 4, valid, 88, 4);  // Layer count.
    }
    absl::StatusOr<KvBlockHeader> header =
        ParseKvBlockHeader(bytes, layout, kFingerprint, Id());
    EXPECT_FALSE(header.ok()) << "seed " << seed;
    EXPECT_TRUE(header.status().code() == absl::StatusCode::kInvalidArgument ||
                header.status().code() == absl::StatusCode::kDataLoss)
        << "seed " << seed << ": " << header.status();
  }
}

}  // namespace
}  // namespace longctx
