#include "model/hf_tokenizer/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace longctx {
namespace {

TEST(Utf8Test, DecodesAndEncodesEveryLength) {
  for (char32_t cp :
       {U'a', U'\u00E9', U'\u4F60', U'\U0001F600', U'\u007F', U'\u0080',
        U'\u07FF', U'\u0800', U'\uFFFF', U'\U00010000', U'\U0010FFFF'}) {
    std::string encoded;
    AppendUtf8(cp, &encoded);
    char32_t decoded = 0;
    EXPECT_EQ(DecodeUtf8Char(encoded, &decoded), encoded.size());
    EXPECT_EQ(decoded, cp);
    EXPECT_TRUE(IsValidUtf8(encoded));
  }
}

TEST(Utf8Test, InvalidSequencesBecomeOneReplacementPerMaximalPart) {
  // A truncated 3-byte character, a lone continuation byte, an overlong
  // form, a surrogate, a byte that never appears.
  EXPECT_EQ(SanitizeUtf8("a\xE4\xBD"
                         "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(SanitizeUtf8("\x80"), "\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("\xFF"), "\xEF\xBF\xBD");
  EXPECT_FALSE(IsValidUtf8("abcdefghij\xE4\xBD"));
  EXPECT_TRUE(IsValidUtf8("abcdefghijklmnopqrstuvwxyz \xE4\xBD\xA0"));
  char32_t cp = 0;
  EXPECT_EQ(DecodeUtf8Char("\xE4\xBD"
                           "b",
                           &cp),
            2u);
  EXPECT_EQ(cp, 0xFFFDu);
}

}  // namespace
}  // namespace longctx
