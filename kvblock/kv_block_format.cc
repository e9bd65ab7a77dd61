#include "kvblock/kv_block_format.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace longctx {
namespace {

// KvDtypeCode is the header's dtype field (kv_block_format.h).
uint32_t KvDtypeCode(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF16:
      return 0;
    case KvDtype::kF32:
      return 1;
    case KvDtype::kBf16:
      return 2;
  }
  return 0;
}

// Sizes of the fixed fields and of one checksum (see the header layout in
// kv_block_format.h).
constexpr size_t kFixedBytes = 120;
constexpr size_t kChecksumBytes = 16;
// Offsets of the fields after the fingerprint.
constexpr size_t kKeyOffset = 24;
constexpr size_t kDigestOffset = kKeyOffset + kBlockKeyBytes;
constexpr size_t kDimsOffset = kDigestOffset + kBlockKeyBytes;  // num_layers.

void AppendU32(uint32_t value, std::string* out) {
  for (int i = 0; i < 4; ++i)
    out->push_back(static_cast<char>(value >> (8 * i)));
}

void AppendU64(uint64_t value, std::string* out) {
  for (int i = 0; i < 8; ++i)
    out->push_back(static_cast<char>(value >> (8 * i)));
}

void AppendHash(const Hash128& hash, std::string* out) {
  AppendU64(hash.lo, out);
  AppendU64(hash.hi, out);
}

// Little-endian reads; callers have checked that the bytes exist.
uint32_t ReadU32(absl::string_view bytes, size_t offset) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    value |=
        static_cast<uint32_t>(static_cast<unsigned char>(bytes[offset + i]))
        << (8 * i);
  }
  return value;
}

uint64_t ReadU64(absl::string_view bytes, size_t offset) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) {
    value |=
        static_cast<uint64_t>(static_cast<unsigned char>(bytes[offset + i]))
        << (8 * i);
  }
  return value;
}

Hash128 ReadHash(absl::string_view bytes, size_t offset) {
  return Hash128{ReadU64(bytes, offset), ReadU64(bytes, offset + 8)};
}

std::string LayoutString(const KvLayout& layout) {
  return absl::StrCat("{layers ", layout.num_layers, ", kv_heads ",
                      layout.num_kv_heads, ", head_dim ", layout.head_dim,
                      ", block_size ", layout.block_size, ", dtype ",
                      KvDtypeName(layout.dtype), "}");
}

// CheckLayout says whether a layout can be stored; `what` names its origin.
absl::Status CheckLayout(const KvLayout& layout, absl::string_view what) {
  auto in_range = [](int value, int limit) {
    return value >= 1 && value <= limit;
  };
  if (!in_range(layout.num_layers, kMaxKvLayers) ||
      !in_range(layout.num_kv_heads, kMaxKvDimension) ||
      !in_range(layout.head_dim, kMaxKvDimension) ||
      !in_range(layout.block_size, kMaxKvDimension)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " layout ", LayoutString(layout),
        " has a dimension below 1 or "
        "above its limit (",
        kMaxKvLayers, " layers, ", kMaxKvDimension, " otherwise)"));
  }
  return absl::OkStatus();
}

bool SameLayout(const KvLayout& a, const KvLayout& b) {
  return a.num_layers == b.num_layers && a.num_kv_heads == b.num_kv_heads &&
         a.head_dim == b.head_dim && a.block_size == b.block_size &&
         a.dtype == b.dtype;
}

// The seed of layer `layer`'s checksum: LayerChecksum hashes a whole layer
// at once, DecodeKvBlockPiecesInto piece by piece with a Hasher128.
uint64_t LayerChecksumSeed(int layer) { return static_cast<uint64_t>(layer); }

Hash128 LayerChecksum(const void* data, size_t size, int layer) {
  return ComputeHash128(data, size, LayerChecksumSeed(layer));
}

}  // namespace

size_t KvBlockHeaderBytes(int num_layers) {
  return kFixedBytes + kChecksumBytes * static_cast<size_t>(num_layers) +
         kChecksumBytes;
}

absl::StatusOr<std::vector<std::string>> EncodeKvBlock(
    const KvLayout& layout, const Hash128& fingerprint, const BlockKey& id,
    int token_count, const uint8_t* block_data) {
  absl::Status status = CheckLayout(layout, "the block's");
  if (!status.ok()) return status;
  if (token_count < 1 || token_count > layout.block_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("token_count is ", token_count, "; expected 1 to ",
                     layout.block_size, " (block_size)"));
  }
  if (id.key.size() != kBlockKeyBytes ||
      id.token_digest.size() != kBlockKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the block's key has ", id.key.size(), " bytes and its token digest ",
        id.token_digest.size(), "; expected ", kBlockKeyBytes, " each"));
  }
  if (block_data == nullptr) {
    return absl::InvalidArgumentError("block_data is null");
  }
  const size_t layer_bytes = layout.LayerBytes();
  std::vector<std::string> parts(1 + layout.num_layers);
  std::string& header = parts[0];
  header.reserve(KvBlockHeaderBytes(layout.num_layers));
  AppendU32(kKvBlockMagic, &header);
  AppendU32(kKvBlockFormatVersion, &header);
  AppendHash(fingerprint, &header);
  header.append(id.key);
  header.append(id.token_digest);
  AppendU32(static_cast<uint32_t>(layout.num_layers), &header);
  AppendU32(static_cast<uint32_t>(layout.num_kv_heads), &header);
  AppendU32(static_cast<uint32_t>(layout.head_dim), &header);
  AppendU32(static_cast<uint32_t>(layout.block_size), &header);
  AppendU32(KvDtypeCode(layout.dtype), &header);
  AppendU32(static_cast<uint32_t>(token_count), &header);
  AppendU64(layer_bytes, &header);
  for (int l = 0; l < layout.num_layers; ++l) {
    const uint8_t* layer = block_data + static_cast<size_t>(l) * layer_bytes;
    parts[1 + l].assign(reinterpret_cast<const char*>(layer), layer_bytes);
    AppendHash(LayerChecksum(layer, layer_bytes, l), &header);
  }
  AppendHash(ComputeHash128(header.data(), header.size(), kHeaderChecksumSeed),
             &header);
  return parts;
}

absl::StatusOr<KvBlockHeader> ParseKvBlockHeader(
    absl::string_view part0, const KvLayout& expected_layout,
    const Hash128& expected_fingerprint, const BlockKey& expected_id) {
  if (part0.size() < KvBlockHeaderBytes(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block header has ", part0.size(), " bytes; at least ",
                     KvBlockHeaderBytes(1), " expected"));
  }
  const uint32_t magic = ReadU32(part0, 0);
  if (magic != kKvBlockMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block header has magic 0x", absl::Hex(magic),
                     "; expected 0x", absl::Hex(kKvBlockMagic)));
  }
  KvBlockHeader header;
  header.version = ReadU32(part0, 4);
  if (header.version != kKvBlockFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block format version ", header.version,
                     " is not supported (this build reads version ",
                     kKvBlockFormatVersion, ")"));
  }
  const uint32_t num_layers = ReadU32(part0, kDimsOffset);
  if (num_layers < 1 || num_layers > static_cast<uint32_t>(kMaxKvLayers)) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block header has ", num_layers,
                     " layers; expected 1 to ", kMaxKvLayers));
  }
  const size_t header_bytes = KvBlockHeaderBytes(static_cast<int>(num_layers));
  if (part0.size() != header_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV block header has ", part0.size(), " bytes; a header for ",
        num_layers, " layers has ", header_bytes));
  }
  const size_t checked_bytes = header_bytes - kChecksumBytes;
  if (ComputeHash128(part0.data(), checked_bytes, kHeaderChecksumSeed) !=
      ReadHash(part0, checked_bytes)) {
    return absl::DataLossError("KV block header fails its checksum");
  }

  header.fingerprint = ReadHash(part0, 8);
  header.id.key = std::string(part0.substr(kKeyOffset, kBlockKeyBytes));
  header.id.token_digest =
      std::string(part0.substr(kDigestOffset, kBlockKeyBytes));
  const uint32_t dims[3] = {ReadU32(part0, kDimsOffset + 4),
                            ReadU32(part0, kDimsOffset + 8),
                            ReadU32(part0, kDimsOffset + 12)};
  for (uint32_t dim : dims) {
    if (dim < 1 || dim > static_cast<uint32_t>(kMaxKvDimension)) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV block header has a dimension of ", dim,
                       "; expected 1 to ", kMaxKvDimension));
    }
  }
  const uint32_t dtype = ReadU32(part0, kDimsOffset + 16);
  if (dtype > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block header has dtype ", dtype,
                     "; expected 0 (f16), 1 (f32) or 2 (bf16)"));
  }
  header.layout.num_layers = static_cast<int>(num_layers);
  header.layout.num_kv_heads = static_cast<int>(dims[0]);
  header.layout.head_dim = static_cast<int>(dims[1]);
  header.layout.block_size = static_cast<int>(dims[2]);
  header.layout.dtype = dtype == 0   ? KvDtype::kF16
                        : dtype == 1 ? KvDtype::kF32
                                     : KvDtype::kBf16;
  const uint32_t token_count = ReadU32(part0, kDimsOffset + 20);
  if (token_count < 1 || token_count > dims[2]) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block header has token_count ", token_count,
                     "; expected 1 to ", dims[2], " (block_size)"));
  }
  header.token_count = static_cast<int>(token_count);
  const uint64_t layer_bytes = ReadU64(part0, kDimsOffset + 24);
  if (layer_bytes != header.layout.LayerBytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV block header has layer_bytes ", layer_bytes, "; its layout ",
        LayoutString(header.layout), " has ", header.layout.LayerBytes()));
  }
  header.layer_checksums.reserve(num_layers);
  for (uint32_t l = 0; l < num_layers; ++l) {
    header.layer_checksums.push_back(
        ReadHash(part0, kFixedBytes + kChecksumBytes * l));
  }

  if (header.fingerprint != expected_fingerprint) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV block is of model ", header.fingerprint.ToHex(),
                     "; expected model ", expected_fingerprint.ToHex()));
  }
  if (!SameLayout(header.layout, expected_layout)) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV block has layout ", LayoutString(header.layout),
                     "; expected ", LayoutString(expected_layout)));
  }
  // A block under another key (copied or written there by someone who could
  // Put) or for other tokens is foreign, whatever its checksums say.
  if (header.id.key != expected_id.key) {
    return absl::FailedPreconditionError(
        "KV block was stored under another key than the one it was read "
        "from");
  }
  if (header.id.token_digest != expected_id.token_digest) {
    return absl::FailedPreconditionError(
        "KV block holds other tokens than the prompt's block");
  }
  return header;
}

absl::Status VerifyLayerPart(const KvBlockHeader& header, int layer,
                             absl::string_view bytes) {
  if (layer < 0 || layer >= header.layout.num_layers ||
      layer >= static_cast<int>(header.layer_checksums.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer ", layer, " is not in [0, ", header.layout.num_layers, ")"));
  }
  if (bytes.size() != header.layout.LayerBytes()) {
    return absl::DataLossError(absl::StrCat("KV block layer ", layer, " has ",
                                            bytes.size(), " bytes; expected ",
                                            header.layout.LayerBytes()));
  }
  if (LayerChecksum(bytes.data(), bytes.size(), layer) !=
      header.layer_checksums[layer]) {
    return absl::DataLossError(
        absl::StrCat("KV block layer ", layer, " fails its checksum"));
  }
  return absl::OkStatus();
}

absl::StatusOr<KvBlockHeader> DecodeKvBlockPiecesInto(
    absl::Span<const KvBlockPiecesPart> parts, const KvLayout& layout,
    const Hash128& fingerprint, const BlockKey& id, uint8_t* block_data) {
  if (block_data == nullptr) {
    return absl::InvalidArgumentError("block_data is null");
  }
  if (parts.empty()) {
    return absl::InvalidArgumentError("KV block has no parts");
  }
  // The header is small: joined when it arrived in pieces.
  std::string joined;
  absl::string_view part0;
  if (parts[0].size() == 1) {
    part0 = parts[0][0];
  } else {
    for (absl::string_view piece : parts[0]) {
      joined.append(piece.data(), piece.size());
    }
    part0 = joined;
  }
  absl::StatusOr<KvBlockHeader> header =
      ParseKvBlockHeader(part0, layout, fingerprint, id);
  if (!header.ok()) return header.status();
  const size_t expected_parts = 1 + static_cast<size_t>(layout.num_layers);
  if (parts.size() != expected_parts) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block has ", parts.size(), " parts; expected ",
                     expected_parts, " (a header and one per layer)"));
  }
  const size_t layer_bytes = layout.LayerBytes();
  for (int l = 0; l < layout.num_layers; ++l) {
    size_t size = 0;
    for (absl::string_view piece : parts[1 + l]) size += piece.size();
    if (size != layer_bytes) {
      return absl::DataLossError(absl::StrCat("KV block layer ", l, " has ",
                                              size, " bytes; expected ",
                                              layer_bytes));
    }
  }
  // Each layer is hashed and copied a stretch at a time, so the copy reads
  // what the hash just brought into the cache: one pass over memory.
  constexpr size_t kStretch = 32 << 10;
  for (int l = 0; l < layout.num_layers; ++l) {
    uint8_t* out = block_data + static_cast<size_t>(l) * layer_bytes;
    Hasher128 hasher(LayerChecksumSeed(l));
    for (absl::string_view piece : parts[1 + l]) {
      for (size_t at = 0; at < piece.size(); at += kStretch) {
        const size_t n = std::min(kStretch, piece.size() - at);
        hasher.Update(piece.data() + at, n);
        std::memcpy(out, piece.data() + at, n);
        out += n;
      }
    }
    if (hasher.Finish() != header->layer_checksums[l]) {
      return absl::DataLossError(
          absl::StrCat("KV block layer ", l, " fails its checksum"));
    }
  }
  return header;
}

absl::StatusOr<KvBlockHeader> VerifyKvBlockInPlace(absl::string_view part0,
                                                   const KvLayout& layout,
                                                   const Hash128& fingerprint,
                                                   const BlockKey& id,
                                                   const uint8_t* block_data) {
  if (block_data == nullptr) {
    return absl::InvalidArgumentError("block_data is null");
  }
  absl::StatusOr<KvBlockHeader> header =
      ParseKvBlockHeader(part0, layout, fingerprint, id);
  if (!header.ok()) return header.status();
  const size_t layer_bytes = layout.LayerBytes();
  for (int l = 0; l < layout.num_layers; ++l) {
    if (LayerChecksum(block_data + static_cast<size_t>(l) * layer_bytes,
                      layer_bytes, l) != header->layer_checksums[l]) {
      return absl::DataLossError(
          absl::StrCat("KV block layer ", l, " fails its checksum"));
    }
  }
  return header;
}

absl::StatusOr<KvBlockHeader> DecodeKvBlockInto(
    absl::Span<const std::string> parts, const KvLayout& layout,
    const Hash128& fingerprint, const BlockKey& id, uint8_t* block_data) {
  std::vector<absl::string_view> pieces(parts.begin(), parts.end());
  std::vector<KvBlockPiecesPart> pieces_parts;
  pieces_parts.reserve(pieces.size());
  for (const absl::string_view& piece : pieces) {
    pieces_parts.push_back(KvBlockPiecesPart(&piece, 1));
  }
  return DecodeKvBlockPiecesInto(pieces_parts, layout, fingerprint, id,
                                 block_data);
}

}  // namespace longctx
