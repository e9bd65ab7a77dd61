// The memory store's same-host read protocol: whole blocks over a Unix domain
// socket, for a worker on the store's machine (LocalReadServer,
// StoreClientOptions::local_sockets). gRPC's HTTP/2 stream moves a block at a
// fraction of what the socket can (docs/BENCHMARKS.md, "memory store
// restore"); this protocol is a request and the parts' bytes, nothing else.
//
// All integers are little-endian. A connection carries any number of
// requests, one at a time:
//
//   request:  u32 kLocalRequestMagic, u32 key length (<= kMaxLocalKeyBytes),
//             the key's bytes
//   response: u32 kLocalResponseMagic, u32 number of parts P, then P times:
//             u32 status code (absl::StatusCode), u64 length, length bytes
//
// A part with a status code other than OK carries the error message (at most
// kMaxLocalMessageBytes) instead of the part's bytes and ends the response;
// a block that is not stored answers P = 1 and that part NOT_FOUND. Either
// side closes the connection on anything else.
#ifndef LONGCTX_MEMORY_STORE_LOCAL_READ_PROTOCOL_H_
#define LONGCTX_MEMORY_STORE_LOCAL_READ_PROTOCOL_H_

#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace longctx {

inline constexpr uint32_t kLocalRequestMagic = 0x3151524c;   // "LRQ1"
inline constexpr uint32_t kLocalResponseMagic = 0x3152524c;  // "LRR1"
inline constexpr uint32_t kMaxLocalKeyBytes = 1024;
inline constexpr uint32_t kMaxLocalMessageBytes = 4096;
// More parts than any block has (a header and one part per layer).
inline constexpr uint32_t kMaxLocalParts = 1 << 16;

// SendAll writes all `n` bytes (no SIGPIPE). UNAVAILABLE naming `what` when
// the peer is gone, DEADLINE_EXCEEDED when the socket's send timeout passes
// or `deadline` has.
absl::Status SendAll(int fd, const void* data, size_t n, const char* what,
                     absl::Time deadline = absl::InfiniteFuture());

// RecvAll reads exactly `n` bytes. UNAVAILABLE naming `what` when the peer
// closes first, DEADLINE_EXCEEDED when the socket's receive timeout passes
// or `deadline` has (checked between the socket's reads).
absl::Status RecvAll(int fd, void* data, size_t n, const char* what,
                     absl::Time deadline = absl::InfiniteFuture());

// SetTimeouts sets the socket's send and receive timeouts (at least 1 ms).
absl::Status SetTimeouts(int fd, absl::Duration send, absl::Duration receive);

// UnixAddress is the address of the Unix socket at `path`. INVALID_ARGUMENT,
// naming `what` (the flag or option it came from), for an empty path or one
// longer than a socket address holds (107 bytes).
absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path,
                                        absl::string_view what);

// ConnectLocal connects to the Unix socket at `path` (close-on-exec), with
// both timeouts set to `timeout`. UNAVAILABLE when no server answers there.
absl::StatusOr<int> ConnectLocal(const std::string& path,
                                 absl::Duration timeout);

// Little-endian integers in and out of the protocol's frames.
inline void PutU32(char* at, uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<char>(v >> (8 * i));
}
inline void PutU64(char* at, uint64_t v) {
  for (int i = 0; i < 8; ++i) at[i] = static_cast<char>(v >> (8 * i));
}
inline uint32_t GetU32(const char* at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= uint32_t{static_cast<uint8_t>(at[i])} << (8 * i);
  return v;
}
inline uint64_t GetU64(const char* at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= uint64_t{static_cast<uint8_t>(at[i])} << (8 * i);
  return v;
}

}  // namespace longctx

#endif  // LONGCTX_MEMORY_STORE_LOCAL_READ_PROTOCOL_H_
