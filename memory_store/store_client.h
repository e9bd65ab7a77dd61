// StoreClient: the client side of the memory store (proto/memory_store.proto)
// over N shards. Each block key lives on exactly one shard, chosen by
// rendezvous (highest-random-weight) hashing of the key and the shard's
// address, so every client that names the same shard addresses places every
// key on the same shard whatever the order of the list, and adding or removing
// one of N shards moves only about 1/N of the keys.
//
// A shard that is down or slow makes its keys misses: Contains says false and
// Get fails with its status; no call waits longer than
// (1 + max_retries) * call_timeout per shard.
#ifndef LONGCTX_MEMORY_STORE_STORE_CLIENT_H_
#define LONGCTX_MEMORY_STORE_STORE_CLIENT_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "grpcpp/support/slice.h"
#include "proto/memory_store.grpc.pb.h"
#include "services/common/net_address.h"
#include "services/common/tls.h"

namespace longctx {

// StoreClientOptions configures a StoreClient.
struct StoreClientOptions {
  // Deadline of one attempt of one RPC (a whole Put or Get stream included).
  // Default: 2 s.
  absl::Duration call_timeout = absl::Seconds(2);
  // Further attempts after an attempt fails with UNAVAILABLE or
  // DEADLINE_EXCEEDED (every call is idempotent). Default: 1.
  int max_retries = 1;
  // Largest piece of a part sent in one Put message, in bytes; the server
  // caps the chunks of Get itself. Default: 1 MiB.
  size_t chunk_bytes = 1 << 20;
  // Credentials of the channels to the shards. Default: plaintext.
  ChannelSecurity channel_security;
  // Most bytes one Read or Get takes from a shard before giving up on the
  // stream (DATA_LOSS): a shard cannot make a reader hold more. Default:
  // 512 MiB, the store's own --max_block_bytes default.
  int64_t max_block_bytes = 512ll << 20;
  // Per shard, in the order of the addresses given to Create: the path of
  // the shard's local read socket (memory_store --local_socket) when it runs
  // on this machine, or "" for none; empty: none at all. Whole-block reads of
  // such a shard go over the socket (memory_store/local_read_protocol.h)
  // instead of gRPC, and over gRPC when the socket cannot be reached.
  std::vector<std::string> local_sockets;
  // Idle connections to one shard's local socket kept for the next reads.
  // Default: 8.
  int max_idle_local_connections = 8;
};

// StoredBlock is a block read by StoreClient::Read: its parts, each as the
// pieces it arrived in, left where gRPC (or the local socket) received them
// (no copy). Movable; the
// pieces stay valid, wherever the StoredBlock moves, until it is destroyed.
class StoredBlock {
 public:
  size_t num_parts() const { return parts_.size(); }
  // The pieces of part `i`, in order: the part is their concatenation.
  absl::Span<const absl::string_view> part(size_t i) const { return parts_[i]; }
  // Every part's pieces, as DecodeKvBlockPiecesInto takes them.
  std::vector<absl::Span<const absl::string_view>> Parts() const;
  // Part `i` joined into one string (a copy).
  std::string PartString(size_t i) const;
  // Bytes of all parts.
  size_t size() const { return size_; }

 private:
  friend class StoreClient;
  // Each received slice behind its own pointer: a small slice holds its bytes
  // inline, and the pieces must not move with the vector.
  std::vector<std::unique_ptr<grpc::Slice>> slices_;
  // Parts received over a local socket.
  std::vector<std::unique_ptr<char[]>> owned_;
  std::vector<std::vector<absl::string_view>> parts_;
  size_t size_ = 0;
};

// StoreClient is thread-safe: any number of threads may call it at once.
class StoreClient {
 public:
  // Keys are 32 bytes (BlockKey::key of kvblock/block_keys.h).
  static constexpr size_t kKeySize = 32;
  // Most keys the server takes in one Contains or Delete call; longer lists
  // are split.
  static constexpr int kMaxKeysPerCall = 65536;

  // Create makes a client of the shards at `shards` (at least one, no address
  // twice). Channels connect lazily: a shard that is down now is not an error.
  // INVALID_ARGUMENT for an empty or duplicated address list, a non-positive
  // call_timeout or chunk_bytes, or a negative max_retries.
  static absl::StatusOr<std::unique_ptr<StoreClient>> Create(
      const std::vector<HostPort>& shards, const StoreClientOptions& options);

  // Put stores the block `parts` (at least one part; part 0 is the header)
  // under `key`. OK means the shard has it durably (stored now, or the same
  // block was stored already). INVALID_ARGUMENT for a key that is not
  // kKeySize bytes or no parts; otherwise the shard's status (ALREADY_EXISTS
  // when another block is stored under the key, which is never replaced;
  // UNAVAILABLE when it is down; RESOURCE_EXHAUSTED for a block over its
  // limit), its message prefixed with the shard's address.
  absl::Status Put(absl::string_view key, absl::Span<const std::string> parts);

  // Get reads the parts `parts_wanted` of the block `key`, in that order, or
  // all its parts when `parts_wanted` is empty. NOT_FOUND when the shard does
  // not hold the block, UNAVAILABLE or DEADLINE_EXCEEDED when the shard cannot
  // be reached in time, INVALID_ARGUMENT for a bad key or a part number the
  // block lacks, DATA_LOSS when the stream does not carry the parts asked.
  absl::StatusOr<std::vector<std::string>> Get(
      absl::string_view key, absl::Span<const int> parts_wanted = {});

  // Read is Get without copying: the parts stay in the buffers they arrived
  // in. Same errors as Get, and DATA_LOSS when the shard sends a malformed
  // message or more than max_block_bytes.
  absl::StatusOr<StoredBlock> Read(absl::string_view key,
                                   absl::Span<const int> parts_wanted = {});

  // HasLocalSocket says whether shard `shard` (an index into the address
  // list) is read over a local socket (options.local_sockets).
  bool HasLocalSocket(int shard) const {
    return shards_[shard].local != nullptr;
  }

  // ReadInto reads the whole block `key`: its first part into *head and the
  // others, back to back, into `rest`, which they must fill exactly
  // (DATA_LOSS otherwise; nothing past `rest` is ever written). Over a local
  // socket the parts are received straight into `rest`, with no copy;
  // otherwise (and when the socket fails) it is Read and a copy. Same errors
  // as Read; on any error `rest` may have been written.
  absl::Status ReadInto(absl::string_view key, std::string* head,
                        absl::Span<char> rest);

  // Contains says for each key whether its shard holds it. Keys of a shard
  // that cannot be reached, and keys that are not kKeySize bytes, read false.
  // Asks
  // the shards in parallel.
  std::vector<bool> Contains(absl::Span<const std::string> keys);

  // Delete removes the blocks of `keys` (absent keys are ignored) from their
  // shards, in parallel, and returns how many were removed. Fails with
  // INVALID_ARGUMENT for a key that is not kKeySize bytes (before deleting
  // anything), or with the status of the first shard that failed (the other
  // shards' deletions still happen).
  absl::StatusOr<int64_t> Delete(absl::Span<const std::string> keys);

  // ShardOf returns the index in the address list of the shard that holds
  // `key` (any bytes; placement does not check the size).
  int ShardOf(absl::string_view key) const;

  int num_shards() const { return static_cast<int>(shards_.size()); }
  const HostPort& shard_address(int shard) const {
    return shards_[shard].address;
  }

 private:
  // A shard's local read socket and its idle connections.
  struct LocalSocket {
    std::string path;
    absl::Mutex mu;
    std::vector<int> idle ABSL_GUARDED_BY(mu);
    bool warned ABSL_GUARDED_BY(mu) = false;  // Of falling back to gRPC.
    ~LocalSocket();
  };

  struct Shard {
    HostPort address;
    std::string name;          // address.ToString(), for messages.
    uint64_t weight_seed = 0;  // Hash of `name`: its rendezvous seed.
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<memory_store::v1::MemoryStore::Stub> stub;
    std::unique_ptr<LocalSocket> local;  // Null: gRPC only.
  };

  explicit StoreClient(const StoreClientOptions& options);

  // FanOut groups `keys` by shard and runs call(shard, indices) for every
  // shard that has keys, in parallel, where `indices` point into `keys`.
  template <typename Call>
  void FanOut(absl::Span<const std::string> keys, Call call);

  absl::Status PutOnce(Shard& shard, absl::string_view key,
                       absl::Span<const std::string> parts);
  absl::Status ReadOnce(Shard& shard, absl::string_view key,
                        absl::Span<const int> parts_wanted, StoredBlock* block);
  // Where a part of a block read over a local socket goes: called once per
  // part, in order, with its length (already within max_block_bytes); returns
  // where to receive exactly that many bytes, or an error that ends the read.
  using PartSink =
      std::function<absl::StatusOr<char*>(uint32_t part, uint64_t length)>;
  // Reads the whole block over the shard's local socket. UNAVAILABLE or
  // DEADLINE_EXCEEDED when the socket fails (the caller then uses gRPC).
  absl::Status ReadLocal(LocalSocket& local, absl::string_view key,
                         const PartSink& sink);
  // Whether a read that failed over the shard's local socket with `status`
  // goes over gRPC instead (the socket is down or slow: UNAVAILABLE or
  // DEADLINE_EXCEEDED); the first time, says so in the log.
  bool FallBackToGrpc(Shard& shard, const absl::Status& status);
  // One request and its response on the connected socket `fd`.
  absl::Status ReadLocalOn(int fd, const std::string& path,
                           absl::string_view key, const PartSink& sink);
  // Deadline of an attempt that starts now.
  std::chrono::system_clock::time_point Deadline() const;

  const StoreClientOptions options_;
  std::vector<Shard> shards_;  // Fixed after Create; stubs are thread-safe.
};

}  // namespace longctx

#endif  // LONGCTX_MEMORY_STORE_STORE_CLIENT_H_
