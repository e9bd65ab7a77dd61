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

std::vector<std::string> Tokens(const std::vector<TokenEntry>& entries) {
  std::vector<std::string> tokens;
  for (const TokenEntry& entry : entries) tokens.push_back(entry.token);
  return tokens;
}

TEST(ParseTokenFileTest, OneTokenPerLineWithCommentsAndBlankLines) {
  auto tokens = ParseTokenFile(
      "# clients of team a\n"
      "tok-alpha\n"
      "\n"
      "   tok-beta\t\r\n"
      "  # indented comment\n"
      "tok-gamma");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(Tokens(*tokens),
              ElementsAre("tok-alpha", "tok-beta", "tok-gamma"));
}

TEST(ParseTokenFileTest, TenantsAndTheirCacheNamespaces) {
  auto tokens = ParseTokenFile(
      "tok-a1 acme\n"
      "tok-a2\tacme\n"  // A second token of the same tenant.
      "tok-b  acme-batch   cache_namespace=acme\n"
      "tok-c  globex cache_namespace=shared.docs-1\n"
      "tok-d\n");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 5u);
  EXPECT_EQ((*tokens)[0].tenant, (Tenant{"acme", "acme"}));
  EXPECT_EQ((*tokens)[1].tenant, (Tenant{"acme", "acme"}));
  EXPECT_EQ((*tokens)[2].tenant, (Tenant{"acme-batch", "acme"}));
  EXPECT_EQ((*tokens)[3].tenant, (Tenant{"globex", "shared.docs-1"}));
  // A token alone is a tenant of its own, named after a digest of the token
  // (SHA-256 of "tok-d", computed independently), never the token itself.
  EXPECT_EQ((*tokens)[4].tenant.name, "token-18f10d77c959");
  EXPECT_EQ((*tokens)[4].tenant.cache_namespace, (*tokens)[4].tenant.name);
}

TEST(ParseTokenFileTest, RejectsBadLinesNamingTheLineButNotTheToken) {
  const std::vector<std::string> lines = {
      "secret part two",
      "secret tenant cache_namespace=x extra",
      "secret bad/tenant",
      "secret tenant cache_namespace=",
      "secret tenant namespace=x",
      "secret tenant cache_namespace=a b",
      "secret " + std::string(65, 't')};
  for (const std::string& line : lines) {
    auto tokens = ParseTokenFile("good\n" + line + "\n");
    ASSERT_FALSE(tokens.ok()) << line;
    EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(tokens.status().message(), HasSubstr("line 2"));
    EXPECT_THAT(tokens.status().message(), Not(HasSubstr("secret")));
  }
}

TEST(ParseTokenFileTest, RejectsATenantWithTwoNamespacesAndRepeatedTokens) {
  auto two = ParseTokenFile(
      "t1 acme\n"
      "t2 acme cache_namespace=other\n");
  ASSERT_FALSE(two.ok());
  EXPECT_THAT(two.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(two.status().message(), HasSubstr("acme"));
  auto repeated = ParseTokenFile("secret-1 a\nsecret-1 b\n");
  ASSERT_FALSE(repeated.ok());
  EXPECT_THAT(repeated.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(repeated.status().message(), Not(HasSubstr("secret")));
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

TEST(MatchTokenTest, FindsATokenAnywhereInTheList) {
  const std::vector<TokenEntry> tokens = {
      {"first", {}}, {"second", {}}, {"third", {}}};
  EXPECT_EQ(MatchToken("first", tokens), 0);
  EXPECT_EQ(MatchToken("second", tokens), 1);
  EXPECT_EQ(MatchToken("third", tokens), 2);
  EXPECT_EQ(MatchToken("fourth", tokens), -1);
  EXPECT_EQ(MatchToken("secon", tokens), -1);
  EXPECT_EQ(MatchToken("first", {}), -1);
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

TEST_F(BearerAuthTest, ReturnsTheTokensTenant) {
  Write("tok-1 acme\ntok-2 globex cache_namespace=shared\n");
  auto auth = Make(absl::Hours(1));
  ASSERT_NE(auth, nullptr);
  absl::StatusOr<Tenant> acme = auth->Check(true, "Bearer tok-1");
  ASSERT_TRUE(acme.ok()) << acme.status();
  EXPECT_EQ(*acme, (Tenant{"acme", "acme"}));
  absl::StatusOr<Tenant> globex = auth->Check(true, "Bearer tok-2");
  ASSERT_TRUE(globex.ok()) << globex.status();
  EXPECT_EQ(*globex, (Tenant{"globex", "shared"}));
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
    absl::Status status = auth->Check(present, header).status();
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
  EXPECT_EQ(auth->Check(true, "Bearer old-token-1").status().code(),
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
