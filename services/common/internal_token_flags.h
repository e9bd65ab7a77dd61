// The flag of the internal token (services/common/internal_auth.h),
// --internal_token_file, shared by every service: servers check callers with
// it, and the internal channels (internal_tls_flags.h) send it.
#ifndef LONGCTX_SERVICES_COMMON_INTERNAL_TOKEN_FLAGS_H_
#define LONGCTX_SERVICES_COMMON_INTERNAL_TOKEN_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"

namespace longctx {

// InternalTokenFromFlags reads --internal_token_file (ReadInternalToken):
// "" when the flag is empty.
absl::StatusOr<std::string> InternalTokenFromFlags();

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_INTERNAL_TOKEN_FLAGS_H_
