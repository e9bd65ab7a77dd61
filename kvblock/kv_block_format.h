// The stored form of one KV block (DESIGN.md, "KV blocks, offload and
// restore"): the value the memory store keeps under a block's chained key.
//
// A block is stored as 1 + L parts (L = layers):
//
//   part 0      header (below)
//   part 1 + l  layer l: its K then its V tensor, exactly as in a KvBlockPool
//               block buffer (KvLayout::LayerBytes() bytes)
//
// so a reader can fetch the header, then stream and verify layer by layer.
//
// Header, version 1, all integers little-endian, offsets in bytes:
//
//    0  u32  magic 0x564b434c ("LCKV" in file order)
//    4  u32  format version (1)
//    8  16   model fingerprint (Hash128: lo then hi, 8 bytes each)
//   24  u32  num_layers      (L, in [1, kMaxKvLayers])
//   28  u32  num_kv_heads    (>= 1)
//   32  u32  head_dim        (>= 1)
//   36  u32  block_size      (tokens, >= 1)
//   40  u32  dtype           (0 = f16, 1 = f32)
//   44  u32  token_count     (valid tokens, in [1, block_size])
//   48  u64  layer_bytes     (bytes of each layer part)
//   56  16*L checksum of layer l = ComputeHash128(layer bytes, seed = l)
//   56+16L 16 checksum of the header = ComputeHash128(bytes [0, 56+16L),
//            seed = kHeaderChecksumSeed)
//
// Seeding a layer's checksum with its index makes a part stored at the wrong
// index fail its check too.
#ifndef LONGCTX_KVBLOCK_KV_BLOCK_FORMAT_H_
#define LONGCTX_KVBLOCK_KV_BLOCK_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "kvblock/hash128.h"
#include "kvblock/kv_layout.h"

namespace longctx {

// The header's magic number and the format version this code writes and
// reads.
inline constexpr uint32_t kKvBlockMagic = 0x564b434c;
inline constexpr uint32_t kKvBlockFormatVersion = 1;
// Most layers in a block (one part each, plus the header, within the store's
// limit of 4096 parts).
inline constexpr int kMaxKvLayers = 4095;
// Largest num_kv_heads, head_dim or block_size a header may carry; keeps every
// size computed from a header far from overflow.
inline constexpr int kMaxKvDimension = 1 << 20;
// Seed of the header's own checksum.
inline constexpr uint64_t kHeaderChecksumSeed = 0x6c63686561646572ull;

// KvBlockHeader is the parsed part 0 of a stored block.
struct KvBlockHeader {
  uint32_t version = kKvBlockFormatVersion;
  Hash128 fingerprint;
  KvLayout layout;
  int token_count = 0;  // Valid tokens in the block, <= layout.block_size.
  std::vector<Hash128> layer_checksums;  // One per layer.
};

// KvBlockHeaderBytes returns the size in bytes of the header of a block with
// `num_layers` layers.
size_t KvBlockHeaderBytes(int num_layers);

// EncodeKvBlock returns the 1 + layout.num_layers parts of the block whose
// buffer is `block_data` (layout.BlockBytes() bytes, laid out as a KvBlockPool
// block; read only, not retained). INVALID_ARGUMENT for a layout with a
// non-positive or too large dimension, more than kMaxKvLayers layers, or a
// token_count outside [1, layout.block_size], or a null block_data.
// Thread-safe.
absl::StatusOr<std::vector<std::string>> EncodeKvBlock(
    const KvLayout& layout, const Hash128& fingerprint, int token_count,
    const uint8_t* block_data);

// ParseKvBlockHeader parses and checks part 0 of a stored block against what
// the reader expects. Errors, in the order they are checked:
//   INVALID_ARGUMENT    `part0` is not a header: too short, wrong magic,
//                       unsupported version, size that does not match its
//                       layer count;
//   DATA_LOSS           the header's own checksum does not match;
//   INVALID_ARGUMENT    a field is out of range (dtype, a dimension,
//                       token_count, layer_bytes);
//   FAILED_PRECONDITION the block belongs to another model (fingerprint) or
//                       has another layout than `expected_layout`.
// Never reads outside `part0`, whatever its bytes. Thread-safe.
absl::StatusOr<KvBlockHeader> ParseKvBlockHeader(
    absl::string_view part0, const KvLayout& expected_layout,
    const Hash128& expected_fingerprint);

// VerifyLayerPart checks that `bytes` is layer `layer` of the block described
// by `header` (from ParseKvBlockHeader). INVALID_ARGUMENT if `layer` is not in
// [0, num_layers); DATA_LOSS naming the layer when the size or the checksum
// does not match. Thread-safe.
absl::Status VerifyLayerPart(const KvBlockHeader& header, int layer,
                             absl::string_view bytes);

// DecodeKvBlockInto checks all of `parts` (as returned by EncodeKvBlock: the
// header, then every layer) against `layout` and `fingerprint`, and only when
// everything matches copies the layers into `block_data` (layout.BlockBytes()
// bytes, not retained). Returns the parsed header (for its token_count).
// Errors: INVALID_ARGUMENT for a part count other than 1 + num_layers or a
// null block_data, and those of ParseKvBlockHeader and VerifyLayerPart; on
// any error `block_data` is left unchanged. Thread-safe for distinct
// block_data.
absl::StatusOr<KvBlockHeader> DecodeKvBlockInto(
    absl::Span<const std::string> parts, const KvLayout& layout,
    const Hash128& fingerprint, uint8_t* block_data);

}  // namespace longctx

#endif  // LONGCTX_KVBLOCK_KV_BLOCK_FORMAT_H_
