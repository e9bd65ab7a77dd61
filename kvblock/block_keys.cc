#include "kvblock/block_keys.h"

#include <openssl/sha.h>

#include <cstring>

namespace longctx {
namespace {

constexpr absl::string_view kSeedDomain("longctx.kv-block-key.v2\0", 24);

void AppendU64(uint64_t value, std::string* out) {
  for (int i = 0; i < 8; ++i) {
    out->push_back(static_cast<char>(value >> (8 * i)));
  }
}

std::string Sha256(const void* data, size_t size) {
  std::string digest(kBlockKeyBytes, '\0');
  SHA256(static_cast<const unsigned char*>(data), size,
         reinterpret_cast<unsigned char*>(digest.data()));
  return digest;
}

// Serializes token ids byte by byte so that digests do not depend on the
// host's byte order.
void TokenBytes(absl::Span<const int32_t> tokens, unsigned char* out) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    const uint32_t id = static_cast<uint32_t>(tokens[t]);
    for (int i = 0; i < 4; ++i) {
      out[4 * t + i] = static_cast<unsigned char>(id >> (8 * i));
    }
  }
}

}  // namespace

std::string BlockKeySeed(const Hash128& model_fingerprint,
                         absl::string_view cache_namespace) {
  std::string input(kSeedDomain);
  AppendU64(model_fingerprint.lo, &input);
  AppendU64(model_fingerprint.hi, &input);
  AppendU64(cache_namespace.size(), &input);
  input.append(cache_namespace.data(), cache_namespace.size());
  return Sha256(input.data(), input.size());
}

std::string TokenDigest(absl::Span<const int32_t> tokens) {
  std::vector<unsigned char> bytes(4 * tokens.size());
  TokenBytes(tokens, bytes.data());
  return Sha256(bytes.data(), bytes.size());
}

std::vector<BlockKey> ChainedBlockKeys(absl::string_view seed,
                                       absl::Span<const int32_t> tokens,
                                       int block_size) {
  std::vector<BlockKey> keys;
  if (block_size <= 0 || seed.size() != kBlockKeyBytes) return keys;
  const size_t block = static_cast<size_t>(block_size);
  const size_t num_blocks = tokens.size() / block;
  keys.reserve(num_blocks);
  std::vector<unsigned char> bytes(4 * block);
  unsigned char chain[2 * kBlockKeyBytes];  // K_{i-1} ‖ D_i.
  std::memcpy(chain, seed.data(), kBlockKeyBytes);
  for (size_t b = 0; b < num_blocks; ++b) {
    TokenBytes(tokens.subspan(b * block, block), bytes.data());
    BlockKey id;
    id.token_digest = Sha256(bytes.data(), bytes.size());
    std::memcpy(chain + kBlockKeyBytes, id.token_digest.data(), kBlockKeyBytes);
    id.key = Sha256(chain, sizeof(chain));
    std::memcpy(chain, id.key.data(), kBlockKeyBytes);
    keys.push_back(std::move(id));
  }
  return keys;
}

}  // namespace longctx
