// Small file and JSON helpers shared by the model loaders and writers.
#ifndef LONGCTX_MODEL_FOLDER_IO_UTIL_H_
#define LONGCTX_MODEL_FOLDER_IO_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

// LONGCTX_RETURN_IF_ERROR returns the status of `expr` from the enclosing
// function when it is not OK.
#define LONGCTX_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    const absl::Status longctx_status_ = (expr);       \
    if (!longctx_status_.ok()) return longctx_status_; \
  } while (false)

namespace longctx {

// JoinPath returns dir + "/" + name (no doubled slash).
std::string JoinPath(absl::string_view dir, absl::string_view name);

// PathExists reports whether `path` names an existing file or folder.
bool PathExists(const std::string& path);

// IsDirectory reports whether `path` names an existing folder.
bool IsDirectory(const std::string& path);

// Most bytes ReadFile reads by default: far more than any model folder's
// JSON (a tokenizer.json is a few MiB), far less than memory.
inline constexpr size_t kMaxReadFileBytes = size_t{256} << 20;

// ReadFile returns the whole content of `path`. NOT_FOUND "<path>: not found"
// when it does not exist; INVALID_ARGUMENT for a folder, and for a file of
// more than `max_bytes` (refused before it is read); the system's error
// otherwise (with the path).
absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     size_t max_bytes = kMaxReadFileBytes);

// WriteFileAtomically writes `content` to `path` through a temporary file in
// the same folder and a rename, so readers never see a partial file. Errors
// name the path and the system's reason.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view content);

// ParseJson parses `text`; INVALID_ARGUMENT "<source>: malformed JSON: <the
// parser's message>" on a syntax error. Never throws.
absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text,
                                         absl::string_view source);

// JsonForMessage renders `value` for an error message: short, and safe on
// any input (nlohmann's dump() recurses once per nesting level, so a
// maliciously deep value would overflow the stack). Nesting beyond 3 levels,
// containers beyond 8 entries and strings beyond 64 bytes are elided ("...").
std::string JsonForMessage(const nlohmann::json& value);

// ErrnoToStatus returns a status for the current errno with the code that
// fits it (NOT_FOUND, PERMISSION_DENIED, ...) and "<context>: <strerror>".
absl::Status ErrnoToStatus(int error_number, absl::string_view context);

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_IO_UTIL_H_
