// Hash128: a fast 128-bit non-cryptographic hash of byte strings, for content
// addresses (the model fingerprint, the chained keys of KV blocks) and
// checksums.
//
// The function is fixed: the same bytes and seed give the same Hash128 on every
// machine, build and run (values are pinned by hash128_test.cc), so hashes may
// be stored and compared across processes and restarts. It is NOT
// cryptographic: someone who wants to build a collision can; accidental
// collisions of distinct inputs are as rare as for a random 128-bit function.
//
// Definition (version 1). The input is read as little-endian 64-bit words
// w[0..n), the last one zero-padded when the length is not a multiple of 8.
// Eight 64-bit lanes start from per-lane constants xor-ed with the seed; word
// w[j] enters lane j % 8 as lane = (rotl(lane, 27) ^ w[j]) * M (a bijection of
// the lane for each word). At the end the eight lanes and the byte length are
// folded into two 64-bit halves by two chains of multiply-xorshift finalizers
// that each read every lane, and the halves are mixed with each other.
//
// Speed: about 8 bytes per cycle on large buffers (16 GB/s and more on current
// x86 cores), plus tens of nanoseconds of fixed cost per hash.
#ifndef LONGCTX_KVBLOCK_HASH128_H_
#define LONGCTX_KVBLOCK_HASH128_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace longctx {

// Hash128 is a 128-bit hash value. Its canonical byte form (for hashing a hash,
// e.g. chaining) is lo then hi, each as 8 little-endian bytes.
struct Hash128 {
  uint64_t lo = 0;
  uint64_t hi = 0;

  // ToHex returns 32 lowercase hex digits: hi then lo, as one big-endian
  // 128-bit number.
  std::string ToHex() const;
  // FromHex parses what ToHex writes (32 hex digits, either case); false,
  // leaving *out alone, for anything else.
  static bool FromHex(absl::string_view hex, Hash128* out);

  friend bool operator==(const Hash128& a, const Hash128& b) {
    return a.lo == b.lo && a.hi == b.hi;
  }
  friend bool operator!=(const Hash128& a, const Hash128& b) {
    return !(a == b);
  }
  // Lexicographic on (hi, lo), i.e. numeric order; lets Hash128 key ordered
  // containers.
  friend bool operator<(const Hash128& a, const Hash128& b) {
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
  }

  // Lets Hash128 key absl hash containers.
  template <typename H>
  friend H AbslHashValue(H state, const Hash128& h) {
    return H::combine(std::move(state), h.lo, h.hi);
  }
};

// Hasher128 computes a Hash128 incrementally: Update with the input in any
// number of pieces, then Finish. The result equals ComputeHash128 of the
// concatenated pieces, however they were split. A Hasher128 is a small value
// (~150 bytes, no allocation) that may be copied to fork a hash; not
// thread-safe (one thread at a time per object).
class Hasher128 {
 public:
  explicit Hasher128(uint64_t seed = 0);

  // Update appends `size` bytes at `data` (which may be null when size is 0).
  void Update(const void* data, size_t size);
  void Update(absl::string_view bytes) { Update(bytes.data(), bytes.size()); }
  // Update appends the canonical 16 bytes of `hash` (lo, then hi, little
  // endian).
  void Update(const Hash128& hash);
  // UpdateU64 appends `value` as 8 little-endian bytes.
  void UpdateU64(uint64_t value);

  // Finish returns the hash of everything appended so far. It does not change
  // the hasher: more Updates may follow and Finish may be called again.
  Hash128 Finish() const;

  // The number of bytes appended so far.
  uint64_t size() const { return total_size_; }

 private:
  static constexpr size_t kStripeBytes = 64;  // 8 lanes of 8 bytes.

  uint64_t lanes_[8];
  uint64_t seed_;
  uint64_t total_size_ = 0;
  unsigned char buffer_[kStripeBytes];  // The input of an unfinished stripe.
  size_t buffered_ = 0;
};

// ComputeHash128 returns the hash of `size` bytes at `data` with `seed`.
// Thread-safe.
Hash128 ComputeHash128(const void* data, size_t size, uint64_t seed = 0);
// ComputeHash128 of a string's bytes with seed 0 (for another seed use the
// overload above: a (literal, number) pair would read as (data, size)).
inline Hash128 ComputeHash128(absl::string_view bytes) {
  return ComputeHash128(bytes.data(), bytes.size());
}

}  // namespace longctx

#endif  // LONGCTX_KVBLOCK_HASH128_H_
