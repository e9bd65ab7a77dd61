// TestPki: certificates a test makes itself with the openssl command-line
// tool — a CA, a certificate for 127.0.0.1 and localhost signed by it (usable
// as server and as client certificate), one for the name "longctx-internal"
// only (as the Kubernetes manifests use), and a second CA with a certificate
// for 127.0.0.1 and localhost of its own. EC P-256 keys, valid for two days.
#ifndef LONGCTX_SERVICES_COMMON_TESTING_TEST_PKI_H_
#define LONGCTX_SERVICES_COMMON_TESTING_TEST_PKI_H_

#include <string>

#include "absl/status/statusor.h"

namespace longctx::testing {

// Paths of the PEM files of a TestPki.
struct TestPki {
  std::string ca_cert;
  std::string cert;  // SAN DNS:localhost, IP:127.0.0.1; server and client use.
  std::string key;
  std::string internal_cert;  // SAN DNS:longctx-internal; signed by ca_cert.
  std::string internal_key;
  std::string other_ca_cert;  // Not trusted by anything.
  std::string other_cert;     // Signed by other_ca_cert.
  std::string other_key;
};

// MakeTestPki writes the files into `dir` (which must exist). INTERNAL, with
// openssl's output, if a command fails.
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir);

}  // namespace longctx::testing

#endif  // LONGCTX_SERVICES_COMMON_TESTING_TEST_PKI_H_
