#include "services/common/constant_time.h"

#include <cstddef>

namespace longctx {

bool ConstantTimeEquals(absl::string_view presented,
                        absl::string_view expected) {
  // Every byte of `presented` is compared (against `expected` repeated when
  // the lengths differ) and the differences are only accumulated, so where
  // the first difference lies never changes the time taken.
  size_t diff = presented.size() ^ expected.size();
  const size_t m = expected.size();
  for (size_t i = 0; i < presented.size(); ++i) {
    const unsigned char e =
        m == 0 ? 0 : static_cast<unsigned char>(expected[i % m]);
    diff |= static_cast<unsigned char>(presented[i]) ^ e;
  }
  return diff == 0;
}

}  // namespace longctx
