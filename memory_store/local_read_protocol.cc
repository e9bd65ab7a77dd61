#include "memory_store/local_read_protocol.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace longctx {
namespace {

absl::Status IoError(const char* what, const char* verb, int error) {
  if (error == EAGAIN || error == EWOULDBLOCK) {
    return absl::DeadlineExceededError(
        absl::StrCat(what, ": timed out waiting to ", verb));
  }
  return absl::UnavailableError(
      absl::StrCat(what, ": cannot ", verb, ": ", std::strerror(error)));
}

timeval Timeval(absl::Duration d) {
  return absl::ToTimeval(std::max(d, absl::Milliseconds(1)));
}

}  // namespace

absl::Status SendAll(int fd, const void* data, size_t n, const char* what,
                     absl::Time deadline) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": deadline passed"));
    }
    const ssize_t sent = send(fd, p, n, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      return IoError(what, "send", errno);
    }
    p += sent;
    n -= static_cast<size_t>(sent);
  }
  return absl::OkStatus();
}

absl::Status RecvAll(int fd, void* data, size_t n, const char* what,
                     absl::Time deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": deadline passed"));
    }
    const ssize_t got = recv(fd, p, n, 0);
    if (got == 0) {
      return absl::UnavailableError(
          absl::StrCat(what, ": the connection closed"));
    }
    if (got < 0) {
      if (errno == EINTR) continue;
      return IoError(what, "receive", errno);
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

absl::Status SetTimeouts(int fd, absl::Duration send, absl::Duration receive) {
  const timeval s = Timeval(send), r = Timeval(receive);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof(s)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof(r)) != 0) {
    return absl::InternalError(
        absl::StrCat("setsockopt: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path,
                                        absl::string_view what) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "' is empty or longer than ",
                     sizeof(address.sun_path) - 1, " bytes"));
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

absl::StatusOr<int> ConnectLocal(const std::string& path,
                                 absl::Duration timeout) {
  absl::StatusOr<sockaddr_un> address = UnixAddress(path, "socket path");
  if (!address.ok()) return address.status();
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  absl::Status status = SetTimeouts(fd, timeout, timeout);
  if (status.ok() && connect(fd, reinterpret_cast<const sockaddr*>(&*address),
                             sizeof(*address)) != 0) {
    status = absl::UnavailableError(
        absl::StrCat("cannot connect to ", path, ": ", std::strerror(errno)));
  }
  if (!status.ok()) {
    close(fd);
    return status;
  }
  return fd;
}

}  // namespace longctx
