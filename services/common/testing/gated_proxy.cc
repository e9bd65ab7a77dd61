#include "services/common/testing/gated_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace longctx::testing {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

// Writes all of `data`; false on error.
bool WriteAll(int fd, const char* data, ssize_t size) {
  while (size > 0) {
    ssize_t n = send(fd, data, static_cast<size_t>(size), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= n;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GatedProxy>> GatedProxy::Start(
    int upstream_port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in addr = Loopback(0);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 64) != 0) {
    close(fd);
    return absl::InternalError(
        absl::StrCat("cannot listen on loopback: ", std::strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int wake[2];
  if (pipe(wake) != 0) {
    close(fd);
    return absl::InternalError("pipe() failed");
  }
  std::unique_ptr<GatedProxy> proxy(new GatedProxy(
      fd, ntohs(addr.sin_port), upstream_port, wake[0], wake[1]));
  proxy->acceptor_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

GatedProxy::GatedProxy(int listen_fd, int port, int upstream_port,
                       int wake_read, int wake_write)
    : listen_fd_(listen_fd),
      port_(port),
      upstream_port_(upstream_port),
      wake_read_(wake_read),
      wake_write_(wake_write) {}

GatedProxy::~GatedProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  const char byte = 0;
  (void)!write(wake_write_, &byte, 1);  // Never read: stays readable.
  acceptor_.join();
  std::vector<std::thread> relays;
  {
    absl::MutexLock lock(&mu_);
    relays.swap(relays_);
  }
  for (std::thread& t : relays) t.join();
  close(listen_fd_);
  close(wake_read_);
  close(wake_write_);
}

void GatedProxy::Open() {
  absl::MutexLock lock(&mu_);
  open_ = true;
}

int GatedProxy::accepted() const {
  absl::MutexLock lock(&mu_);
  return accepted_;
}

bool GatedProxy::WaitReadable(int fd) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {wake_read_, POLLIN, 0}};
  while (true) {
    int n = poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[1].revents != 0) return false;
    return true;
  }
}

void GatedProxy::AcceptLoop() {
  while (WaitReadable(listen_fd_)) {
    int client = accept(listen_fd_, nullptr, nullptr);
    if (client < 0) continue;
    absl::MutexLock lock(&mu_);
    ++accepted_;
    relays_.emplace_back([this, client] { Relay(client); });
  }
}

void GatedProxy::Relay(int client_fd) {
  {
    absl::MutexLock lock(&mu_);
    auto go = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return open_ || stopping_;
    };
    mu_.Await(absl::Condition(&go));
    if (stopping_) {
      close(client_fd);
      return;
    }
  }
  int upstream = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = Loopback(upstream_port_);
  if (upstream < 0 || connect(upstream, reinterpret_cast<sockaddr*>(&addr),
                              sizeof(addr)) != 0) {
    if (upstream >= 0) close(upstream);
    close(client_fd);
    return;
  }
  // Either side closing (or the proxy stopping) ends the relay.
  pollfd fds[3] = {
      {client_fd, POLLIN, 0}, {upstream, POLLIN, 0}, {wake_read_, POLLIN, 0}};
  char buffer[64 << 10];
  bool alive = true;
  while (alive) {
    int n = poll(fds, 3, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[2].revents != 0) break;
    for (int side = 0; side < 2 && alive; ++side) {
      if (fds[side].revents == 0) continue;
      ssize_t got = recv(fds[side].fd, buffer, sizeof(buffer), 0);
      if (got < 0 && errno == EINTR) continue;
      alive = got > 0 && WriteAll(fds[1 - side].fd, buffer, got);
    }
  }
  close(upstream);
  close(client_fd);
}

}  // namespace longctx::testing
