#include "kvblock/block_keys.h"

namespace longctx {

std::vector<Hash128> ChainedBlockKeys(const Hash128& model_fingerprint,
                                      absl::Span<const int32_t> tokens,
                                      int block_size) {
  std::vector<Hash128> keys;
  if (block_size <= 0) return keys;
  const size_t num_blocks = tokens.size() / static_cast<size_t>(block_size);
  keys.reserve(num_blocks);
  Hash128 previous = model_fingerprint;
  // Token ids are serialized byte by byte so the key does not depend on the
  // host's byte order.
  std::vector<unsigned char> bytes(static_cast<size_t>(block_size) * 4);
  for (size_t b = 0; b < num_blocks; ++b) {
    const int32_t* block = tokens.data() + b * block_size;
    for (int t = 0; t < block_size; ++t) {
      const uint32_t id = static_cast<uint32_t>(block[t]);
      for (int i = 0; i < 4; ++i) {
        bytes[4 * t + i] = static_cast<unsigned char>(id >> (8 * i));
      }
    }
    Hasher128 hasher;
    hasher.Update(previous);
    hasher.Update(bytes.data(), bytes.size());
    previous = hasher.Finish();
    keys.push_back(previous);
  }
  return keys;
}

std::string KeyBytes(const Hash128& key) {
  std::string out(16, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(key.lo >> (8 * i));
    out[8 + i] = static_cast<char>(key.hi >> (8 * i));
  }
  return out;
}

}  // namespace longctx
