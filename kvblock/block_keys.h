// Chained content keys of KV blocks (DESIGN.md, "KV blocks, offload and
// restore").
//
// A prompt is cut into blocks of `block_size` tokens. The key of block i is
//
//   h_{-1} = model fingerprint
//   h_i    = ComputeHash128(canonical bytes of h_{i-1} ‖ token ids of block i)
//
// where the canonical bytes of a Hash128 are lo then hi (8 little-endian bytes
// each) and token ids are 4 little-endian bytes each. Key i therefore names the
// whole prefix up to the end of block i under one model: equal prefixes give
// equal keys across requests, processes and restarts, and different models
// give different keys.
#ifndef LONGCTX_KVBLOCK_BLOCK_KEYS_H_
#define LONGCTX_KVBLOCK_BLOCK_KEYS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "kvblock/hash128.h"

namespace longctx {

// ChainedBlockKeys returns one key per FULL block of `tokens`
// (tokens.size() / block_size keys); a partial last block gets no key.
// Returns an empty vector when block_size <= 0. Thread-safe (a pure function).
std::vector<Hash128> ChainedBlockKeys(const Hash128& model_fingerprint,
                                      absl::Span<const int32_t> tokens,
                                      int block_size);

// KeyBytes returns the 16-byte form of `key` used as the memory store's block
// key: lo then hi, each as 8 little-endian bytes (the canonical form of
// Hash128).
std::string KeyBytes(const Hash128& key);

}  // namespace longctx

#endif  // LONGCTX_KVBLOCK_BLOCK_KEYS_H_
