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
// Header, version 2, all integers little-endian, offsets in bytes:
//
//    0  u32  magic 0x564b434c ("LCKV" in file order)
//    4  u32  format version (2)
//    8  16   model fingerprint (Hash128: lo then hi, 8 bytes each)
//   24  32   the block's key (BlockKey::key, block_keys.h)
//   56  32   the digest of the block's token ids (BlockKey::token_digest)
//   88  u32  num_layers      (L, in [1, kMaxKvLayers])
//   92  u32  num_kv_heads    (>= 1)
//   96  u32  head_dim        (>= 1)
//  100  u32  block_size      (tokens, >= 1)
//  104  u32  dtype           (0 = f16, 1 = f32, 2 = bf16)
//  108  u32  token_count     (valid tokens, in [1, block_size])
//  112  u64  layer_bytes     (bytes of each layer part)
//  120  16*L checksum of layer l = ComputeHash128(layer bytes, seed = l)
//  120+16L 16 checksum of the header = ComputeHash128(bytes [0, 120+16L),
//            seed = kHeaderChecksumSeed)
//
// Seeding a layer's checksum with its index makes a part stored at the wrong
// index fail its check too. The checksums catch corruption, not forgery (they
// are not cryptographic): what keeps a forged block out is that only the
// internal plane may Put, that Put never replaces a block, and that the key
// and token digest a reader asks for must be the ones the header records
// (version 1, without them, is no longer read).
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
#include "kvblock/block_keys.h"
#include "kvblock/hash128.h"
#include "kvblock/kv_layout.h"

namespace longctx {

// The header's magic number and the format version this code writes and
// reads.
inline constexpr uint32_t kKvBlockMagic = 0x564b434c;
inline constexpr uint32_t kKvBlockFormatVersion = 2;
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
  BlockKey id;  // The key and token digest the block was stored under.
  KvLayout layout;
  int token_count = 0;  // Valid tokens in the block, <= layout.block_size.
  std::vector<Hash128> layer_checksums;  // One per layer.
};

// KvBlockHeaderBytes returns the size in bytes of the header of a block with
// `num_layers` layers.
size_t KvBlockHeaderBytes(int num_layers);

// EncodeKvBlock returns the 1 + layout.num_layers parts of the block whose
// buffer is `block_data` (layout.BlockBytes() bytes, laid out as a KvBlockPool
// block; read only, not retained), to be stored under `id`. INVALID_ARGUMENT
// for a layout with a non-positive or too large dimension, more than
// kMaxKvLayers layers, a token_count outside [1, layout.block_size], an id
// whose key or digest is not kBlockKeyBytes long, or a null block_data.
// Thread-safe.
absl::StatusOr<std::vector<std::string>> EncodeKvBlock(
    const KvLayout& layout, const Hash128& fingerprint, const BlockKey& id,
    int token_count, const uint8_t* block_data);

// ParseKvBlockHeader parses and checks part 0 of a stored block against what
// the reader expects. Errors, in the order they are checked:
//   INVALID_ARGUMENT    `part0` is not a header: too short, wrong magic,
//                       unsupported version, size that does not match its
//                       layer count;
//   DATA_LOSS           the header's own checksum does not match;
//   INVALID_ARGUMENT    a field is out of range (dtype, a dimension,
//                       token_count, layer_bytes);
//   FAILED_PRECONDITION the block belongs to another model (fingerprint), has
//                       another layout than `expected_layout`, was stored
//                       under another key than expected_id.key, or holds
//                       other tokens than expected_id.token_digest.
// Never reads outside `part0`, whatever its bytes. Thread-safe.
absl::StatusOr<KvBlockHeader> ParseKvBlockHeader(
    absl::string_view part0, const KvLayout& expected_layout,
    const Hash128& expected_fingerprint, const BlockKey& expected_id);

// VerifyLayerPart checks that `bytes` is layer `layer` of the block described
// by `header` (from ParseKvBlockHeader). INVALID_ARGUMENT if `layer` is not in
// [0, num_layers); DATA_LOSS naming the layer when the size or the checksum
// does not match. Thread-safe.
absl::Status VerifyLayerPart(const KvBlockHeader& header, int layer,
                             absl::string_view bytes);

// DecodeKvBlockInto checks all of `parts` (as returned by EncodeKvBlock: the
// header, then every layer) against `layout`, `fingerprint` and `id` and
// copies the layers into `block_data` (layout.BlockBytes() bytes, not
// retained), verifying each layer's checksum as it copies it: the bytes are
// read once. Returns the parsed header (for its token_count).
// Errors: INVALID_ARGUMENT for a part count other than 1 + num_layers or a
// null block_data, and those of ParseKvBlockHeader and VerifyLayerPart. When
// the header, the part count or a layer's size is wrong, `block_data` is left
// unchanged; when a layer fails its checksum, the layers up to it may have
// been written, so on any error the caller must not use `block_data` as a
// block. Thread-safe for distinct block_data.
absl::StatusOr<KvBlockHeader> DecodeKvBlockInto(
    absl::Span<const std::string> parts, const KvLayout& layout,
    const Hash128& fingerprint, const BlockKey& id, uint8_t* block_data);

// KvBlockPiecesPart is one part of a stored block as the pieces it arrived in
// (a network buffer's slices): the part is their concatenation.
using KvBlockPiecesPart = absl::Span<const absl::string_view>;

// DecodeKvBlockPiecesInto is DecodeKvBlockInto for parts given as pieces, so
// a block can be decoded where it landed in received buffers, with no copy
// to join them first.
absl::StatusOr<KvBlockHeader> DecodeKvBlockPiecesInto(
    absl::Span<const KvBlockPiecesPart> parts, const KvLayout& layout,
    const Hash128& fingerprint, const BlockKey& id, uint8_t* block_data);

// VerifyKvBlockInPlace checks a block whose layer parts were received
// straight into `block_data` (layer l at l * LayerBytes(), where
// DecodeKvBlockInto would have copied it) against its header `part0`: the
// header's checks of ParseKvBlockHeader and every layer's checksum, one
// read of the data, no copy. DATA_LOSS for a layer that fails its checksum.
absl::StatusOr<KvBlockHeader> VerifyKvBlockInPlace(absl::string_view part0,
                                                   const KvLayout& layout,
                                                   const Hash128& fingerprint,
                                                   const BlockKey& id,
                                                   const uint8_t* block_data);

}  // namespace longctx

#endif  // LONGCTX_KVBLOCK_KV_BLOCK_FORMAT_H_
