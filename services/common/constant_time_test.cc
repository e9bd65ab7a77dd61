#include "services/common/constant_time.h"

#include "gtest/gtest.h"

namespace longctx {
namespace {

TEST(ConstantTimeEqualsTest, EqualOnlyForTheSameBytes) {
  EXPECT_TRUE(ConstantTimeEquals("abcdef", "abcdef"));
  EXPECT_FALSE(ConstantTimeEquals("Xbcdef", "abcdef"));     // First byte.
  EXPECT_FALSE(ConstantTimeEquals("abcdeX", "abcdef"));     // Last byte.
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcdef"));        // A prefix.
  EXPECT_FALSE(ConstantTimeEquals("abcdefabc", "abcdef"));  // Repeats it.
  EXPECT_FALSE(ConstantTimeEquals("abcdefabcdef", "abcdef"));
  EXPECT_FALSE(ConstantTimeEquals("", "abcdef"));
  EXPECT_FALSE(ConstantTimeEquals("abcdef", ""));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  // Bytes differing only in the high bit.
  EXPECT_FALSE(ConstantTimeEquals("\x81", "\x01"));
}

}  // namespace
}  // namespace longctx
