// Fuzz target: the KV block decoder of the memory store's values
// (kvblock/kv_block_format.h), which reads bytes that come back from
// storage and may be corrupt.
//
// Input: a flags byte, then the block's parts, each as a 16-bit little-endian
// length and that many bytes (the last one may be cut short by the end of the
// input). Flags:
//   bits 0-1  the layout the reader expects (kLayouts);
//   bit 2     "repair": before decoding, set the header's layer count to the
//             number of layer parts, size the header to match, write the
//             expected fingerprint, key and token digest and recompute every
//             checksum, so that the
//             checks past the checksums (ranges, layout, layer sizes, the copy)
//             see fuzzed values instead of stopping at DATA_LOSS;
//   bit 3     expect the layout the header itself declares (read from its
//             fields, as a reader that trusted it would),
//             which reaches the layer checks for any layout.
//
// Properties checked: nothing crashes or reads out of bounds (ASan); a header
// that parses matches the expected layout, fingerprint, key and token digest;
// a failed decode
// leaves the destination untouched; a successful one re-encodes to exactly the
// same parts.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fuzz/fuzz_check.h"
#include "kvblock/hash128.h"
#include "kvblock/kv_block_format.h"
#include "kvblock/kv_layout.h"

namespace longctx {
namespace {

constexpr Hash128 kFingerprint{0x0123456789abcdefull, 0xfedcba9876543210ull};

// The key and token digest the reader expects (make_seeds.cc writes them).
const BlockKey& ExpectedId() {
  static const BlockKey* id = new BlockKey{std::string(kBlockKeyBytes, '\x11'),
                                           std::string(kBlockKeyBytes, '\x22')};
  return *id;
}

KvLayout Layout(int layers, int heads, int head_dim, int block_size,
                KvDtype dtype) {
  KvLayout layout;
  layout.num_layers = layers;
  layout.num_kv_heads = heads;
  layout.head_dim = head_dim;
  layout.block_size = block_size;
  layout.dtype = dtype;
  return layout;
}

const KvLayout kLayouts[4] = {
    Layout(1, 1, 2, 1, KvDtype::kF16),  // 8 bytes a layer.
    Layout(2, 1, 4, 4, KvDtype::kF16),  // 64.
    Layout(2, 2, 2, 2, KvDtype::kF32),  // 64.
    Layout(3, 1, 1, 2, KvDtype::kF32),  // 16.
};

void PutU32(uint32_t value, std::string* bytes, size_t offset) {
  for (int i = 0; i < 4; ++i) (*bytes)[offset + i] = char(value >> (8 * i));
}

void PutHash(const Hash128& hash, std::string* bytes, size_t offset) {
  for (int i = 0; i < 8; ++i) {
    (*bytes)[offset + i] = char(hash.lo >> (8 * i));
    (*bytes)[offset + 8 + i] = char(hash.hi >> (8 * i));
  }
}

// Repair makes the header consistent with the layer parts (see the flags).
void Repair(std::vector<std::string>* parts) {
  const int layers = static_cast<int>(parts->size()) - 1;
  if (layers < 1 || layers > kMaxKvLayers) return;
  std::string& header = (*parts)[0];
  header.resize(KvBlockHeaderBytes(layers), '\0');
  PutHash(kFingerprint, &header, 8);
  header.replace(24, kBlockKeyBytes, ExpectedId().key);
  header.replace(56, kBlockKeyBytes, ExpectedId().token_digest);
  PutU32(static_cast<uint32_t>(layers), &header, 88);
  for (int l = 0; l < layers; ++l) {
    const std::string& layer = (*parts)[1 + l];
    PutHash(ComputeHash128(layer.data(), layer.size(), l), &header,
            120 + 16 * l);
  }
  const size_t checked = header.size() - 16;
  PutHash(ComputeHash128(header.data(), checked, kHeaderChecksumSeed), &header,
          checked);
}

}  // namespace
}  // namespace longctx

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longctx;
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  std::vector<std::string> parts;
  size_t at = 1;
  while (at < size && parts.size() < 16) {
    size_t length = data[at];
    if (at + 1 < size) length |= size_t{data[at + 1]} << 8;
    at = std::min(at + 2, size);
    length = std::min(length, size - at);
    parts.emplace_back(reinterpret_cast<const char*>(data + at), length);
    at += length;
  }
  if (parts.empty()) parts.emplace_back();
  if (flags & 4) Repair(&parts);

  KvLayout layout = kLayouts[flags & 3];
  if ((flags & 8) && parts[0].size() >= 108) {
    // The layout the header declares, as a reader that trusted it would use.
    const std::string& h = parts[0];
    auto u32 = [&](size_t offset) {
      uint32_t value = 0;
      for (int i = 0; i < 4; ++i) {
        value |= uint32_t{static_cast<unsigned char>(h[offset + i])} << (8 * i);
      }
      return static_cast<int>(value);
    };
    const int dtype = u32(104);
    layout = Layout(u32(88), u32(92), u32(96), u32(100),
                    dtype == 1   ? KvDtype::kF32
                    : dtype == 2 ? KvDtype::kBf16
                                 : KvDtype::kF16);
  }

  absl::StatusOr<KvBlockHeader> header =
      ParseKvBlockHeader(parts[0], layout, kFingerprint, ExpectedId());
  if (header.ok()) {
    FUZZ_CHECK(header->fingerprint == kFingerprint, "fingerprint");
    FUZZ_CHECK(header->id == ExpectedId(), "key and token digest");
    FUZZ_CHECK(header->layout.num_layers == layout.num_layers &&
                   header->layout.num_kv_heads == layout.num_kv_heads &&
                   header->layout.head_dim == layout.head_dim &&
                   header->layout.block_size == layout.block_size &&
                   header->layout.dtype == layout.dtype,
               "a parsed header has the expected layout");
    FUZZ_CHECK(
        header->token_count >= 1 && header->token_count <= layout.block_size,
        "token_count %d", header->token_count);
    FUZZ_CHECK(
        static_cast<int>(header->layer_checksums.size()) == layout.num_layers,
        "one checksum per layer");
    for (int l = -1; l <= static_cast<int>(parts.size()); ++l) {
      const std::string& bytes =
          parts[std::min<size_t>(std::max(l + 1, 0), parts.size() - 1)];
      const absl::Status status = VerifyLayerPart(*header, l, bytes);
      if (l < 0 || l >= layout.num_layers) {
        FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument,
                   "layer %d out of range: %s", l, status.ToString().c_str());
      }
    }
  }

  // Decode into a small buffer only: layouts from the header can be huge.
  if (layout.BlockBytes() > (1u << 20)) return 0;
  // At least one byte: a layout of size 0 must not make the buffer null.
  std::vector<uint8_t> block(std::max<size_t>(layout.BlockBytes(), 1), 0xA5);
  absl::StatusOr<KvBlockHeader> decoded = DecodeKvBlockInto(
      parts, layout, kFingerprint, ExpectedId(), block.data());
  if (!decoded.ok()) {
    FUZZ_CHECK(header.ok() || decoded.status() == header.status(),
               "decode fails as the header parse did");
    // Only a layer failing its checksum may leave layers written.
    if (!header.ok() || decoded.status().message().find("checksum") ==
                            absl::string_view::npos) {
      for (uint8_t byte : block) {
        FUZZ_CHECK(byte == 0xA5,
                   "a decode that failed before any checksum "
                   "wrote to the block");
      }
    }
    return 0;
  }
  FUZZ_CHECK(header.ok(), "decode succeeded where the header parse failed");
  absl::StatusOr<std::vector<std::string>> encoded = EncodeKvBlock(
      layout, kFingerprint, ExpectedId(), decoded->token_count, block.data());
  FUZZ_CHECK(encoded.ok(), "re-encode: %s",
             encoded.status().ToString().c_str());
  FUZZ_CHECK(*encoded == parts, "a decoded block re-encodes to its parts");
  return 0;
}
