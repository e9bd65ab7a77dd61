#include "services/gateway/stop_matcher.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace longctx {
namespace {

TEST(StopMatcherTest, WithoutStopsEverythingPassesThrough) {
  StopMatcher matcher({});
  EXPECT_EQ(matcher.Push("abc"), "abc");
  EXPECT_EQ(matcher.Flush(), "");
  EXPECT_FALSE(matcher.stopped());
}

TEST(StopMatcherTest, StopsBeforeTheStopSequence) {
  StopMatcher matcher({"END"});
  EXPECT_EQ(matcher.Push("hello END world"), "hello ");
  EXPECT_TRUE(matcher.stopped());
  EXPECT_EQ(matcher.Push("more"), "");
  EXPECT_EQ(matcher.Flush(), "");
}

TEST(StopMatcherTest, HoldsBackAPossibleStartUntilDecided) {
  StopMatcher matcher({"\n\n"});
  EXPECT_EQ(matcher.Push("line\n"), "line");
  EXPECT_EQ(matcher.Push("x"), "\nx");
  EXPECT_EQ(matcher.Push("\n"), "");
  EXPECT_EQ(matcher.Push("\n"), "");
  EXPECT_TRUE(matcher.stopped());
}

TEST(StopMatcherTest, EarliestOfSeveralStopsWins) {
  StopMatcher matcher({"cd", "b"});
  EXPECT_EQ(matcher.Push("abcd"), "a");
}

TEST(StopMatcherTest, FlushReturnsHeldTextWhenNoStopCame) {
  StopMatcher matcher({"STOP"});
  EXPECT_EQ(matcher.Push("ST"), "");
  EXPECT_EQ(matcher.Flush(), "ST");
}

// Any split of the stream gives the same text as matching the whole at once.
TEST(StopMatcherTest, ResultDoesNotDependOnHowTheTextIsSplit) {
  std::mt19937 rng(3);
  const std::string alphabet = "ab\n";
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    int length = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < length; ++i) text += alphabet[rng() % alphabet.size()];
    std::vector<std::string> stops = {"aab", "\n\nb", "bba"};
    StopMatcher whole(stops);
    std::string expected = whole.Push(text);
    expected += whole.Flush();
    StopMatcher pieces(stops);
    std::string got;
    for (size_t i = 0; i < text.size();) {
      size_t n = 1 + rng() % 4;
      got += pieces.Push(text.substr(i, n));
      i += n;
    }
    got += pieces.Flush();
    ASSERT_EQ(got, expected) << "text: " << text;
    ASSERT_EQ(pieces.stopped(), whole.stopped());
  }
}

}  // namespace
}  // namespace longctx
