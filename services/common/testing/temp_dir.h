// NewTempDir: a fresh, empty folder for one test's files.
#ifndef LONGCTX_SERVICES_COMMON_TESTING_TEMP_DIR_H_
#define LONGCTX_SERVICES_COMMON_TESTING_TEMP_DIR_H_

#include <string>

#include "absl/strings/string_view.h"

namespace longctx::testing {

// NewTempDir makes a new, empty folder under $TEST_TMPDIR (or /tmp) whose
// name starts with `prefix` and returns its path; each call makes another.
// Aborts, naming the path, if it cannot. Thread-safe.
std::string NewTempDir(absl::string_view prefix);

}  // namespace longctx::testing

#endif  // LONGCTX_SERVICES_COMMON_TESTING_TEMP_DIR_H_
