#include "kvblock/hash128.h"

#include <algorithm>
#include <cstring>

namespace longctx {
namespace {

// Odd multiplier of the lane update; about half of its bits are set so that
// every input bit reaches many product bits.
constexpr uint64_t kLaneMultiplier = 0x930f3d70d6db09a5ull;
// Finalizer constants, picked among random odd candidates for the lowest
// worst-case single-bit avalanche bias (indistinguishable from random at 2e4
// samples per input bit).
constexpr uint64_t kMix1 = 0xef2bcd89ac175b53ull;
constexpr uint64_t kMix2 = 0xfc55f1a92a5dd099ull;
// Separate the length and the two output halves.
constexpr uint64_t kLengthMultiplier = 0x9e3779b97f4a7c15ull;
constexpr uint64_t kHighSalt = 0x6a09e667f3bcc909ull;

constexpr uint64_t RotateLeft(uint64_t x, int bits) {
  return (x << bits) | (x >> (64 - bits));
}

// Mix is a bijection of 64-bit words in which every input bit changes every
// output bit with probability ~1/2.
constexpr uint64_t Mix(uint64_t x) {
  x ^= x >> 32;
  x *= kMix1;
  x ^= x >> 29;
  x *= kMix2;
  x ^= x >> 32;
  return x;
}

// The starting value of lane i (before the seed): distinct, dense constants.
constexpr uint64_t LaneStart(int i) {
  return Mix(kLengthMultiplier * static_cast<uint64_t>(i + 1));
}
constexpr uint64_t kLaneStart[8] = {LaneStart(0), LaneStart(1), LaneStart(2),
                                    LaneStart(3), LaneStart(4), LaneStart(5),
                                    LaneStart(6), LaneStart(7)};

inline uint64_t LoadLittleEndian64(const unsigned char* p) {
  uint64_t word;
  std::memcpy(&word, p, sizeof(word));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  word = __builtin_bswap64(word);
#endif
  return word;
}

inline uint64_t UpdateLane(uint64_t lane, uint64_t word) {
  return (RotateLeft(lane, 27) ^ word) * kLaneMultiplier;
}

// Consumes `stripes` stripes of 64 bytes; the eight lanes are independent
// chains so that their multiplications overlap in the CPU.
void ConsumeStripes(uint64_t* lanes, const unsigned char* p, size_t stripes) {
  uint64_t l0 = lanes[0], l1 = lanes[1], l2 = lanes[2], l3 = lanes[3];
  uint64_t l4 = lanes[4], l5 = lanes[5], l6 = lanes[6], l7 = lanes[7];
  for (size_t s = 0; s < stripes; ++s, p += 64) {
    l0 = UpdateLane(l0, LoadLittleEndian64(p));
    l1 = UpdateLane(l1, LoadLittleEndian64(p + 8));
    l2 = UpdateLane(l2, LoadLittleEndian64(p + 16));
    l3 = UpdateLane(l3, LoadLittleEndian64(p + 24));
    l4 = UpdateLane(l4, LoadLittleEndian64(p + 32));
    l5 = UpdateLane(l5, LoadLittleEndian64(p + 40));
    l6 = UpdateLane(l6, LoadLittleEndian64(p + 48));
    l7 = UpdateLane(l7, LoadLittleEndian64(p + 56));
  }
  lanes[0] = l0, lanes[1] = l1, lanes[2] = l2, lanes[3] = l3;
  lanes[4] = l4, lanes[5] = l5, lanes[6] = l6, lanes[7] = l7;
}

}  // namespace

std::string Hash128::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[15 - i] = kDigits[(hi >> (4 * i)) & 0xf];
    out[31 - i] = kDigits[(lo >> (4 * i)) & 0xf];
  }
  return out;
}

bool Hash128::FromHex(absl::string_view hex, Hash128* out) {
  if (hex.size() != 32) return false;
  uint64_t halves[2] = {0, 0};
  for (int i = 0; i < 32; ++i) {
    const char c = hex[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return false;
    }
    halves[i / 16] = (halves[i / 16] << 4) | static_cast<uint64_t>(digit);
  }
  out->hi = halves[0];
  out->lo = halves[1];
  return true;
}

Hasher128::Hasher128(uint64_t seed) : seed_(seed) {
  for (int i = 0; i < 8; ++i) lanes_[i] = kLaneStart[i] ^ seed;
}

void Hasher128::Update(const void* data, size_t size) {
  if (size == 0) return;
  const auto* p = static_cast<const unsigned char*>(data);
  total_size_ += size;
  if (buffered_ > 0) {
    const size_t take = std::min(size, kStripeBytes - buffered_);
    std::memcpy(buffer_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    size -= take;
    if (buffered_ < kStripeBytes) return;
    ConsumeStripes(lanes_, buffer_, 1);
    buffered_ = 0;
  }
  const size_t stripes = size / kStripeBytes;
  ConsumeStripes(lanes_, p, stripes);
  p += stripes * kStripeBytes;
  size -= stripes * kStripeBytes;
  std::memcpy(buffer_, p, size);
  buffered_ = size;
}

void Hasher128::Update(const Hash128& hash) {
  UpdateU64(hash.lo);
  UpdateU64(hash.hi);
}

void Hasher128::UpdateU64(uint64_t value) {
  unsigned char bytes[8];
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<unsigned char>(value >> (8 * i));
  Update(bytes, sizeof(bytes));
}

Hash128 Hasher128::Finish() const {
  uint64_t lanes[8];
  std::memcpy(lanes, lanes_, sizeof(lanes));
  // The unfinished stripe: whole words, then the last partial word padded
  // with zeros (the length, mixed in below, tells the padding apart from
  // real zero bytes).
  size_t offset = 0;
  int lane = 0;
  for (; offset + 8 <= buffered_; offset += 8, ++lane) {
    lanes[lane] = UpdateLane(lanes[lane], LoadLittleEndian64(buffer_ + offset));
  }
  if (offset < buffered_) {
    unsigned char last[8] = {0};
    std::memcpy(last, buffer_ + offset, buffered_ - offset);
    lanes[lane] = UpdateLane(lanes[lane], LoadLittleEndian64(last));
  }

  const uint64_t length = total_size_ * kLengthMultiplier;
  uint64_t lo = Mix(seed_ ^ length);
  uint64_t hi = Mix(seed_ ^ RotateLeft(length, 32) ^ kHighSalt);
  for (int i = 0; i < 8; ++i) {
    lo = Mix(lo + lanes[i]);
    hi = Mix(hi ^ RotateLeft(lanes[7 - i], 31));
  }
  // An invertible mix of the two halves, so that each depends on both.
  lo = Mix(lo ^ RotateLeft(hi, 23));
  hi = Mix(hi + lo);
  return Hash128{lo, hi};
}

Hash128 ComputeHash128(const void* data, size_t size, uint64_t seed) {
  Hasher128 hasher(seed);
  hasher.Update(data, size);
  return hasher.Finish();
}

}  // namespace longctx
