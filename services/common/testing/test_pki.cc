#include "services/common/testing/test_pki.h"

#include <cstdio>
#include <fstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace longctx::testing {
namespace {

// Runs `command` through the shell; INTERNAL with its output when it fails.
absl::Status Run(const std::string& command) {
  FILE* pipe = popen(absl::StrCat(command, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("popen failed");
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    output.append(buffer, n);
  }
  int status = pclose(pipe);
  if (status != 0) {
    return absl::InternalError(
        absl::StrCat("`", command, "` failed (", status, "): ", output));
  }
  return absl::OkStatus();
}

// A CA named `name`: <dir>/<name>.crt and <dir>/<name>.key.
absl::Status MakeCa(const std::string& dir, const std::string& name) {
  return Run(absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
      "-nodes -days 2 -subj /CN=",
      name, " -addext basicConstraints=critical,CA:TRUE ",
      "-addext keyUsage=critical,keyCertSign,cRLSign -keyout '", dir, "/", name,
      ".key' -out '", dir, "/", name, ".crt'"));
}

// A leaf certificate `name` for the subject alternative names `san` (e.g.
// "DNS:localhost,IP:127.0.0.1") signed by CA `ca`.
absl::Status MakeLeaf(const std::string& dir, const std::string& ca,
                      const std::string& name, const std::string& san) {
  const std::string base = absl::StrCat(dir, "/", name);
  {
    std::ofstream ext(base + ".ext");
    ext << "basicConstraints=CA:FALSE\n"
           "keyUsage=critical,digitalSignature,keyEncipherment\n"
           "extendedKeyUsage=serverAuth,clientAuth\n"
           "subjectAltName="
        << san << "\n";
    if (!ext) return absl::InternalError("cannot write " + base + ".ext");
  }
  absl::Status status = Run(absl::StrCat(
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-subj /CN=",
      name, " -keyout '", base, ".key' -out '", base, ".csr'"));
  if (!status.ok()) return status;
  return Run(absl::StrCat("openssl x509 -req -days 2 -in '", base,
                          ".csr' -CA '", dir, "/", ca, ".crt' -CAkey '", dir,
                          "/", ca, ".key' -CAcreateserial -extfile '", base,
                          ".ext' -out '", base, ".crt'"));
}

}  // namespace

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir) {
  const std::string local = "DNS:localhost,IP:127.0.0.1";
  for (absl::Status status :
       {MakeCa(dir, "ca"), MakeLeaf(dir, "ca", "node", local),
        MakeLeaf(dir, "ca", "internal", "DNS:longctx-internal"),
        MakeCa(dir, "other-ca"),
        MakeLeaf(dir, "other-ca", "other-node", local)}) {
    if (!status.ok()) return status;
  }
  TestPki pki;
  pki.ca_cert = dir + "/ca.crt";
  pki.cert = dir + "/node.crt";
  pki.key = dir + "/node.key";
  pki.internal_cert = dir + "/internal.crt";
  pki.internal_key = dir + "/internal.key";
  pki.other_ca_cert = dir + "/other-ca.crt";
  pki.other_cert = dir + "/other-node.crt";
  pki.other_key = dir + "/other-node.key";
  return pki;
}

}  // namespace longctx::testing
