#include "services/common/logging.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(LoggingTest, ParsesTheFourLevels) {
  LogLevel level = LogLevel::kError;
  ASSERT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  ASSERT_TRUE(ParseLogLevel("info", &level));
  EXPECT_EQ(level, LogLevel::kInfo);
  ASSERT_TRUE(ParseLogLevel("warning", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
  ASSERT_TRUE(ParseLogLevel("error", &level));
  EXPECT_EQ(level, LogLevel::kError);
  for (const char* bad : {"", "INFO", "warn", "verbose", "3"}) {
    EXPECT_FALSE(ParseLogLevel(bad, &level)) << bad;
  }
}

TEST(LoggingTest, DropsMessagesBelowTheLevel) {
  SetLogProcessName("unit");
  SetLogLevel(LogLevel::kWarning);
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kDebug, "debug %d", 1);
  Log(LogLevel::kInfo, "info %d", 2);
  Log(LogLevel::kWarning, "warning %d", 3);
  Log(LogLevel::kError, "error %d", 4);
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, Not(HasSubstr("debug 1")));
  EXPECT_THAT(out, Not(HasSubstr("info 2")));
  EXPECT_THAT(out, HasSubstr("WARN unit: warning 3\n"));
  EXPECT_THAT(out, HasSubstr("ERROR unit: error 4\n"));

  SetLogLevel(LogLevel::kDebug);
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kDebug, "debug %d", 5);
  out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr("DEBUG unit: debug 5\n"));
  SetLogLevel(LogLevel::kInfo);
}

}  // namespace
}  // namespace longctx
