#include "services/common/net_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace longctx {

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view address,
                                       absl::string_view flag_name) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag_name, "=\"", address, "\" is not host:port: ", why));
  };
  HostPort result;
  absl::string_view port_text;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == absl::string_view::npos) return bad("missing ']'");
    result.host = std::string(address.substr(1, close - 1));
    absl::string_view rest = address.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return bad("missing :port");
    port_text = rest.substr(1);
  } else {
    size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) return bad("missing :port");
    result.host = std::string(address.substr(0, colon));
    if (result.host.find(':') != std::string::npos) {
      return bad("IPv6 hosts need brackets, e.g. [::1]:50051");
    }
    port_text = address.substr(colon + 1);
  }
  if (result.host.empty()) return bad("empty host");
  if (result.host.find_first_of(" \t/,;") != std::string::npos) {
    return bad("host has an invalid character");
  }
  int port = 0;
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &port)) {
    return bad("port is not a number");
  }
  if (port < 0 || port > 65535) return bad("port outside [0, 65535]");
  result.port = port;
  return result;
}

absl::StatusOr<std::vector<HostPort>> ParseHostPortList(
    absl::string_view list, absl::string_view flag_name) {
  std::vector<HostPort> result;
  if (list.empty()) return result;
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    absl::StatusOr<HostPort> address = ParseHostPort(item, flag_name);
    if (!address.ok()) return address.status();
    result.push_back(*std::move(address));
  }
  return result;
}

absl::Status CheckPortFree(const HostPort& address, absl::string_view what) {
  if (address.port == 0) return absl::OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port = absl::StrCat(address.port);
  int rc = getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " address ", address.ToString(),
                     ": cannot resolve host: ", gai_strerror(rc)));
  }
  absl::Status status = absl::OkStatus();
  int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  if (fd < 0) {
    status = absl::InternalError(
        absl::StrCat(what, ": socket(): ", std::strerror(errno)));
  } else {
    // As gRPC binds: connections of an earlier process on this port that are
    // still in TIME_WAIT do not make it busy; a listener does.
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, found->ai_addr, found->ai_addrlen) != 0) {
      int err = errno;
      if (err == EADDRINUSE) {
        status = absl::FailedPreconditionError(absl::StrCat(
            what, " address ", address.ToString(), " is already in use"));
      } else {
        status = absl::FailedPreconditionError(
            absl::StrCat(what, " address ", address.ToString(),
                         " cannot be bound: ", std::strerror(err)));
      }
    }
    close(fd);
  }
  freeaddrinfo(found);
  return status;
}

}  // namespace longctx
