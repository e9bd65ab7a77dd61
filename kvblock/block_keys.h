// Chained content keys of KV blocks (DESIGN.md, "KV blocks, offload and
// restore").
//
// A prompt is cut into blocks of `block_size` tokens. Block i has a token
// digest and a key:
//
//   D_i    = SHA-256(token ids of block i, 4 little-endian bytes each)
//   K_{-1} = the seed: SHA-256("longctx.kv-block-key.v2" ‖ 0x00 ‖
//                              model fingerprint (16 bytes, lo then hi) ‖
//                              namespace length (8 bytes LE) ‖ namespace)
//   K_i    = SHA-256(K_{i-1} ‖ D_i)
//
// K_i names the whole prefix up to the end of block i under one model and one
// cache namespace: equal prefixes give equal keys across requests, processes
// and restarts; another model or another namespace gives other keys. SHA-256
// makes the key a security boundary: nobody can build two prefixes with the
// same key, so a block stored under K_i holds the KV of that prefix and no
// other (the stored header repeats K_i and D_i, kv_block_format.h). The
// namespace keeps tenants' blocks apart: a tenant can neither read nor detect
// the blocks of another namespace.
#ifndef LONGCTX_KVBLOCK_BLOCK_KEYS_H_
#define LONGCTX_KVBLOCK_BLOCK_KEYS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "kvblock/hash128.h"

namespace longctx {

// Bytes of a key, a token digest and a seed (SHA-256 digests).
inline constexpr size_t kBlockKeyBytes = 32;
// Most bytes of a cache namespace a request may carry.
inline constexpr size_t kMaxCacheNamespaceBytes = 256;

// BlockKey identifies one stored block: `key` is the memory store's key and
// `token_digest` the digest of the block's own tokens (D_i above), which the
// block's header records and a restore checks.
struct BlockKey {
  std::string key;           // kBlockKeyBytes.
  std::string token_digest;  // kBlockKeyBytes.

  friend bool operator==(const BlockKey& a, const BlockKey& b) {
    return a.key == b.key && a.token_digest == b.token_digest;
  }
  friend bool operator!=(const BlockKey& a, const BlockKey& b) {
    return !(a == b);
  }
};

// BlockKeySeed returns K_{-1} for a model and a cache namespace (any bytes;
// "" is a namespace like any other). Thread-safe.
std::string BlockKeySeed(const Hash128& model_fingerprint,
                         absl::string_view cache_namespace);

// ChainedBlockKeys returns one BlockKey per FULL block of `tokens`
// (tokens.size() / block_size of them); a partial last block gets none.
// Returns an empty vector when block_size <= 0 or `seed` is not
// kBlockKeyBytes long. Thread-safe (a pure function). About one SHA-256 pass
// over the token bytes: a 1,048,576-token prompt takes milliseconds.
std::vector<BlockKey> ChainedBlockKeys(absl::string_view seed,
                                       absl::Span<const int32_t> tokens,
                                       int block_size);

// TokenDigest returns D_i of one block's tokens. Thread-safe.
std::string TokenDigest(absl::Span<const int32_t> tokens);

}  // namespace longctx

#endif  // LONGCTX_KVBLOCK_BLOCK_KEYS_H_
