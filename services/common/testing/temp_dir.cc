#include "services/common/testing/temp_dir.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace longctx::testing {

std::string NewTempDir(absl::string_view prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  const std::string pattern = absl::StrCat(
      base != nullptr && *base != '\0' ? base : "/tmp", "/", prefix, "_XXXXXX");
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) {
    std::fprintf(stderr, "NewTempDir: cannot make %s: %s\n", pattern.c_str(),
                 std::strerror(errno));
    std::abort();
  }
  return buffer.data();
}

}  // namespace longctx::testing
