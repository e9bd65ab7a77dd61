// LocalReadServer: serves whole-block reads of a BlockStore over a Unix domain
// socket (memory_store/local_read_protocol.h) to processes of the store's own
// user on its machine: the socket file is created mode 0600 and every
// connecting process's user is checked (SO_PEERCRED). Reads only: writes,
// deletes and everything else go through gRPC.
#ifndef LONGCTX_MEMORY_STORE_LOCAL_READ_SERVER_H_
#define LONGCTX_MEMORY_STORE_LOCAL_READ_SERVER_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "memory_store/block_store.h"
#include "prometheus/counter.h"

namespace longctx {

struct LocalReadOptions {
  // Path of the socket (--local_socket). A stale socket file there (no server
  // answers on it) is replaced; a live one or any other file is an error.
  std::string path;
  // Most connections served at once; more are closed at once
  // (--local_socket_max_connections). Default: 16.
  int max_connections = 16;
  // A connection with no request for this long is closed. Default: 5 min.
  absl::Duration idle_timeout = absl::Minutes(5);
  // Most time one send may wait for the reader. Default: 10 s.
  absl::Duration send_timeout = absl::Seconds(10);
};

// Counters a read updates (may be null): the gRPC Get's own, and one of its
// own for the blocks read over the socket.
struct LocalReadCounters {
  prometheus::Counter* blocks_read = nullptr;
  prometheus::Counter* bytes_read = nullptr;
  prometheus::Counter* read_misses = nullptr;
  prometheus::Counter* local_blocks_read = nullptr;
};

// Thread-safe; serves until destroyed.
class LocalReadServer {
 public:
  // Start listens on options.path and serves `store` (not owned; must outlive
  // the server). INVALID_ARGUMENT for a bad option, FAILED_PRECONDITION when
  // the path is in use.
  static absl::StatusOr<std::unique_ptr<LocalReadServer>> Start(
      BlockStore* store, const LocalReadOptions& options,
      const LocalReadCounters& counters);

  // Stops accepting, closes every connection, waits for their threads and
  // removes the socket file.
  ~LocalReadServer();

  const std::string& path() const { return options_.path; }

 private:
  LocalReadServer(BlockStore* store, const LocalReadOptions& options,
                  const LocalReadCounters& counters, int listener);

  void Accept();
  // Serves the requests of one connection until it closes or fails.
  void Serve(int fd);
  // Answers one request, reading parts into `value`; false when the
  // connection must close.
  bool Answer(int fd, std::string& value);

  BlockStore* const store_;
  const LocalReadOptions options_;
  const LocalReadCounters counters_;
  const int listener_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<int> open_ ABSL_GUARDED_BY(mu_);  // Connections served.
  int threads_running_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread acceptor_;
};

}  // namespace longctx

#endif  // LONGCTX_MEMORY_STORE_LOCAL_READ_SERVER_H_
