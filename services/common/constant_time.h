// Comparison of secrets (bearer tokens, the internal token) whose time does
// not tell an attacker how much of a guess was right.
#ifndef LONGCTX_SERVICES_COMMON_CONSTANT_TIME_H_
#define LONGCTX_SERVICES_COMMON_CONSTANT_TIME_H_

#include "absl/strings/string_view.h"

namespace longctx {

// ConstantTimeEquals compares `presented` with `expected` in time that depends
// only on the two lengths, never on the bytes: every byte of `presented` is
// compared, with no early exit at the first difference or on different
// lengths.
bool ConstantTimeEquals(absl::string_view presented,
                        absl::string_view expected);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_CONSTANT_TIME_H_
