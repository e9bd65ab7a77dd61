#include "memory_store/local_read_server.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "memory_store/local_read_protocol.h"
#include "services/common/logging.h"

namespace longctx {
namespace {

// Answers a failed part: its status and message; the response ends there.
bool SendError(int fd, const absl::Status& status) {
  const std::string message(status.message().substr(
      0, std::min<size_t>(status.message().size(), kMaxLocalMessageBytes)));
  char frame[12];
  PutU32(frame, static_cast<uint32_t>(status.code()));
  PutU64(frame + 4, message.size());
  return SendAll(fd, frame, sizeof(frame), "local read").ok() &&
         SendAll(fd, message.data(), message.size(), "local read").ok();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalReadServer>> LocalReadServer::Start(
    BlockStore* store, const LocalReadOptions& options,
    const LocalReadCounters& counters) {
  absl::StatusOr<sockaddr_un> address =
      UnixAddress(options.path, "--local_socket");
  if (!address.ok()) return address.status();
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError(
        "--local_socket_max_connections must be >= 1");
  }
  struct stat st;
  if (lstat(options.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--local_socket ", options.path, " exists and is not a socket"));
    }
    // A socket file: stale unless a server answers on it.
    auto live = ConnectLocal(options.path, absl::Seconds(1));
    if (live.ok()) {
      close(*live);
      return absl::FailedPreconditionError(absl::StrCat(
          "--local_socket ", options.path, " is served by another process"));
    }
    unlink(options.path.c_str());
  }
  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) {
    return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  // Mode 0600 from the start: no moment where others may connect.
  const mode_t old_mask = umask(0177);
  const int bound = bind(listener, reinterpret_cast<const sockaddr*>(&*address),
                         sizeof(*address));
  const int bind_errno = errno;
  umask(old_mask);
  if (bound != 0 || listen(listener, 64) != 0) {
    const int error = bound != 0 ? bind_errno : errno;
    close(listener);
    return absl::FailedPreconditionError(
        absl::StrCat("--local_socket ", options.path,
                     " cannot be served: ", std::strerror(error)));
  }
  return std::unique_ptr<LocalReadServer>(
      new LocalReadServer(store, options, counters, listener));
}

LocalReadServer::LocalReadServer(BlockStore* store,
                                 const LocalReadOptions& options,
                                 const LocalReadCounters& counters,
                                 int listener)
    : store_(store),
      options_(options),
      counters_(counters),
      listener_(listener),
      acceptor_([this] { Accept(); }) {}

LocalReadServer::~LocalReadServer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // Wakes the acceptor and every connection's thread.
    shutdown(listener_, SHUT_RDWR);
    for (int fd : open_) shutdown(fd, SHUT_RDWR);
  }
  acceptor_.join();
  {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return threads_running_ == 0;
    };
    mu_.Await(absl::Condition(&done));
  }
  close(listener_);
  unlink(options_.path.c_str());
}

void LocalReadServer::Accept() {
  while (true) {
    const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      // Out of descriptors or memory: wait rather than spin.
      Log(LogLevel::kWarning, "local socket: accept: %s", std::strerror(errno));
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Seconds(1));
      continue;
    }
    ucred peer{};
    socklen_t length = sizeof(peer);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 ||
        peer.uid != geteuid()) {
      Log(LogLevel::kWarning,
          "local socket: refused a process of user %d (the store runs as %d)",
          static_cast<int>(peer.uid), static_cast<int>(geteuid()));
      close(fd);
      continue;
    }
    if (!SetTimeouts(fd, options_.send_timeout, options_.idle_timeout).ok()) {
      close(fd);
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    if (static_cast<int>(open_.size()) >= options_.max_connections) {
      close(fd);  // The client falls back to gRPC.
      continue;
    }
    open_.insert(fd);
    ++threads_running_;
    std::thread([this, fd] { Serve(fd); }).detach();
  }
}

void LocalReadServer::Serve(int fd) {
  std::string value;  // A part read from the store; its memory is reused.
  while (Answer(fd, value)) {
  }
  absl::MutexLock lock(&mu_);
  open_.erase(fd);
  close(fd);
  --threads_running_;
}

bool LocalReadServer::Answer(int fd, std::string& value) {
  char head[8];
  if (!RecvAll(fd, head, sizeof(head), "local read").ok()) return false;
  const uint32_t key_size = GetU32(head + 4);
  if (GetU32(head) != kLocalRequestMagic || key_size > kMaxLocalKeyBytes) {
    return false;  // Not this protocol: nothing more is read.
  }
  std::string key(key_size, '\0');
  if (!RecvAll(fd, key.data(), key.size(), "local read").ok()) return false;
  char response[8];
  PutU32(response, kLocalResponseMagic);
  absl::StatusOr<int> num_parts = store_->NumParts(key);
  PutU32(response + 4, num_parts.ok() ? static_cast<uint32_t>(*num_parts) : 1);
  if (!SendAll(fd, response, sizeof(response), "local read").ok()) {
    return false;
  }
  if (!num_parts.ok()) {
    if (absl::IsNotFound(num_parts.status()) &&
        counters_.read_misses != nullptr) {
      counters_.read_misses->Increment();
    }
    return SendError(fd, num_parts.status());
  }
  if (counters_.blocks_read != nullptr) counters_.blocks_read->Increment();
  if (counters_.local_blocks_read != nullptr) {
    counters_.local_blocks_read->Increment();
  }
  for (int part = 0; part < *num_parts; ++part) {
    absl::Status status = store_->GetPart(key, part, &value);
    if (!status.ok()) return SendError(fd, status);
    char frame[12];
    PutU32(frame, 0);
    PutU64(frame + 4, value.size());
    if (!SendAll(fd, frame, sizeof(frame), "local read").ok() ||
        !SendAll(fd, value.data(), value.size(), "local read").ok()) {
      return false;
    }
    if (counters_.bytes_read != nullptr) {
      counters_.bytes_read->Increment(static_cast<double>(value.size()));
    }
  }
  return true;
}

}  // namespace longctx
