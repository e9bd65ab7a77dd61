// Parsing and checking of "host:port" network addresses given in flags.
#ifndef LONGCTX_SERVICES_COMMON_NET_ADDRESS_H_
#define LONGCTX_SERVICES_COMMON_NET_ADDRESS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace longctx {

// HostPort is a parsed "host:port" or "[ipv6]:port" address.
struct HostPort {
  std::string host;  // Without brackets for IPv6.
  int port = 0;      // [0, 65535]; 0 asks the system for a free port.

  // ToString formats the address back, bracketing IPv6 hosts.
  std::string ToString() const;
};

// ParseHostPort parses `address`. Returns INVALID_ARGUMENT naming `flag_name`
// when the host is empty, the port is missing, not a number or out of range.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view address,
                                       absl::string_view flag_name);

// ParseHostPortList parses a comma-separated list of addresses (empty entries
// are an error; an empty string gives an empty list).
absl::StatusOr<std::vector<HostPort>> ParseHostPortList(
    absl::string_view list, absl::string_view flag_name);

// CheckPortFree binds a TCP socket to `address` without SO_REUSEPORT and
// releases it. Returns FAILED_PRECONDITION "<what> address <address> is already
// in use" when another process holds the port, and the system's error
// otherwise. Port 0 always succeeds. gRPC would otherwise share the port
// silently (SO_REUSEPORT) or fail with pages of logs; this gives one clear line
// before anything starts.
absl::Status CheckPortFree(const HostPort& address, absl::string_view what);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_NET_ADDRESS_H_
