// GatedProxy: a TCP relay on a loopback port for tests. It accepts connections
// at once but holds them, reading nothing, until Open() is called; from then
// on it relays bytes both ways between each connection and a real server on
// the upstream port. A test points a client at the proxy to make that server
// as slow as it wants, for as long as it wants, without touching the server.
#ifndef LONGCTX_SERVICES_COMMON_TESTING_GATED_PROXY_H_
#define LONGCTX_SERVICES_COMMON_TESTING_GATED_PROXY_H_

#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace longctx::testing {

// GatedProxy is thread-safe. The destructor closes every connection and joins
// its threads.
class GatedProxy {
 public:
  // Start listens on a free 127.0.0.1 port, relaying to 127.0.0.1:upstream.
  static absl::StatusOr<std::unique_ptr<GatedProxy>> Start(int upstream_port);
  ~GatedProxy();

  int port() const { return port_; }

  // Open lets held and future connections through.
  void Open();

  // Connections accepted so far.
  int accepted() const;

 private:
  GatedProxy(int listen_fd, int port, int upstream_port, int wake_read,
             int wake_write);
  void AcceptLoop();
  void Relay(int client_fd);
  // Waits until `fd` is readable; false when the proxy is stopping.
  bool WaitReadable(int fd);

  const int listen_fd_;
  const int port_;
  const int upstream_port_;
  // A pipe that becomes readable when the proxy stops, waking every poll.
  const int wake_read_;
  const int wake_write_;

  mutable absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> relays_ ABSL_GUARDED_BY(mu_);
  std::thread acceptor_;
};

}  // namespace longctx::testing

#endif  // LONGCTX_SERVICES_COMMON_TESTING_GATED_PROXY_H_
