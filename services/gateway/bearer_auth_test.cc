#include "services/gateway/bearer_auth.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/testing/temp_dir.h"

namespace longctx {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseTokenFileTest, OneTokenPerLineWithCommentsAndBlankLines) {
  auto tokens = ParseTokenFile(
      "# clients of team a\n"
      "tok-alpha\n"
      "\n"
      "   tok-beta\t\r\n"
      "  # indented comment\n"
      "tok-gamma");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(*tokens, ElementsAre("tok-alpha", "tok-beta", "tok-gamma"));
}

TEST(ParseTokenFileTest, RejectsInnerSpacesNamingTheLineButNotTheToken) {
  auto tokens = ParseTokenFile("good\nsecret part two\n");
  ASSERT_FALSE(tokens.ok());
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokens.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(tokens.status().message(), Not(HasSubstr("secret")));
}

TEST(ParseTokenFileTest, RejectsNonAsciiBytes) {
  auto tokens = ParseTokenFile("caf\xc3\xa9\n");
  ASSERT_FALSE(tokens.ok());
  EXPECT_THAT(tokens.status().message(), HasSubstr("line 1"));
}

TEST(ParseTokenFileTest, AFileWithoutTokensIsAnError) {
  EXPECT_FALSE(ParseTokenFile("").ok());
  EXPECT_FALSE(ParseTokenFile("# only a comment\n\n").ok());
}

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

TEST(MatchesAnyTokenTest, FindsATokenAnywhereInTheList) {
  const std::vector<std::string> tokens = {"first", "second", "third"};
  EXPECT_TRUE(MatchesAnyToken("first", tokens));
  EXPECT_TRUE(MatchesAnyToken("third", tokens));
  EXPECT_FALSE(MatchesAnyToken("fourth", tokens));
  EXPECT_FALSE(MatchesAnyToken("secon", tokens));
  EXPECT_FALSE(MatchesAnyToken("first", {}));
}

class BearerAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = testing::NewTempDir("bearer_auth") + "/tokens";
    Write("# test tokens\nold-token-1\nold-token-2\n");
  }

  // Replaces the file as Kubernetes does: a new file renamed over the old.
  void Write(const std::string& text) {
    const std::string next = path_ + ".next";
    std::ofstream(next) << text;
    ASSERT_EQ(std::rename(next.c_str(), path_.c_str()), 0);
  }

  std::unique_ptr<BearerAuth> Make(absl::Duration reload_interval) {
    BearerAuthOptions options;
    options.tokens_file = path_;
    options.reload_interval = reload_interval;
    auto auth = BearerAuth::Create(options);
    EXPECT_TRUE(auth.ok()) << auth.status();
    return auth.ok() ? *std::move(auth) : nullptr;
  }

  std::string path_;
};

TEST_F(BearerAuthTest, AcceptsEveryTokenOfTheFile) {
  auto auth = Make(absl::Hours(1));
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->num_tokens(), 2);
  EXPECT_TRUE(auth->Check(true, "Bearer old-token-1").ok());
  EXPECT_TRUE(auth->Check(true, "Bearer old-token-2").ok());
  // The scheme is case-insensitive (RFC 7235).
  EXPECT_TRUE(auth->Check(true, "bearer old-token-2").ok());
}

TEST_F(BearerAuthTest, RejectsEverythingElseWithoutEchoingIt) {
  auto auth = Make(absl::Hours(1));
  ASSERT_NE(auth, nullptr);
  for (const auto& [present, header] :
       std::vector<std::pair<bool, std::string>>{
           {false, ""},
           {true, ""},
           {true, "Bearer"},
           {true, "Bearer "},
           {true, "Basic b2xkLXRva2VuLTE="},
           {true, "old-token-1"},
           {true, "Bearer old-token-1x"},
           {true, "Bearer old-token-"},
           {true, "Bearer guessed-secret-value"}}) {
    absl::Status status = auth->Check(present, header);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << header;
    EXPECT_THAT(status.message(), Not(HasSubstr("old-token")));
    EXPECT_THAT(status.message(), Not(HasSubstr("guessed-secret-value")));
    EXPECT_THAT(status.message(), Not(HasSubstr("b2xk")));
  }
}

TEST_F(BearerAuthTest, MissingFileFailsNamingTheFlag) {
  BearerAuthOptions options;
  options.tokens_file = path_ + ".absent";
  auto auth = BearerAuth::Create(options);
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(auth.status().message(), HasSubstr("--auth_tokens_file="));
}

TEST_F(BearerAuthTest, ReloadsAChangedFileAndRevokesRemovedTokens) {
  auto auth = Make(absl::ZeroDuration());
  ASSERT_NE(auth, nullptr);
  EXPECT_TRUE(auth->Check(true, "Bearer old-token-1").ok());
  Write("new-token\nold-token-2\n");
  EXPECT_EQ(auth->Check(true, "Bearer old-token-1").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(auth->Check(true, "Bearer new-token").ok());
  EXPECT_TRUE(auth->Check(true, "Bearer old-token-2").ok());
}

TEST_F(BearerAuthTest, ABrokenFileKeepsTheTokensInForce) {
  auto auth = Make(absl::ZeroDuration());
  ASSERT_NE(auth, nullptr);
  Write("# emptied by mistake\n");
  EXPECT_TRUE(auth->Check(true, "Bearer old-token-1").ok());
  ASSERT_EQ(std::remove(path_.c_str()), 0);
  EXPECT_TRUE(auth->Check(true, "Bearer old-token-2").ok());
  Write("back-again\n");
  EXPECT_TRUE(auth->Check(true, "Bearer back-again").ok());
  EXPECT_FALSE(auth->Check(true, "Bearer old-token-2").ok());
}

TEST_F(BearerAuthTest, WithoutReloadIntervalPassingTheFileIsNotReread) {
  auto auth = Make(absl::Hours(1));
  ASSERT_NE(auth, nullptr);
  Write("new-token\n");
  EXPECT_TRUE(auth->Check(true, "Bearer old-token-1").ok());
  EXPECT_FALSE(auth->Check(true, "Bearer new-token").ok());
}

}  // namespace
}  // namespace longctx
