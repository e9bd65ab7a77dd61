#include "services/common/internal_auth.h"

#include <fstream>
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "services/common/testing/temp_dir.h"

namespace longctx {
namespace {

using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

const std::string kToken(40, 'k');

std::string WriteFile(const std::string& dir, const std::string& name,
                      const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(ReadInternalTokenTest, ReadsOneTokenIgnoringSurroundingWhitespace) {
  const std::string dir = testing::NewTempDir("token");
  auto token = ReadInternalToken(WriteFile(dir, "t", "\n  " + kToken + "\n"));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, kToken);
  EXPECT_EQ(*ReadInternalToken(""), "");
}

TEST(ReadInternalTokenTest, RefusesBadFilesWithoutShowingTheirContent) {
  const std::string dir = testing::NewTempDir("token");
  EXPECT_EQ(ReadInternalToken(dir + "/missing").status().code(),
            absl::StatusCode::kFailedPrecondition);
  const std::string secretish = "short-secret";
  for (const std::string& text : {secretish, std::string(5000, 'x'),
                                  kToken + " " + kToken, kToken + "\x01"}) {
    absl::StatusOr<std::string> token =
        ReadInternalToken(WriteFile(dir, "bad", text));
    ASSERT_FALSE(token.ok()) << text;
    EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(token.status().message().find("--internal_token_file"),
              std::string::npos);
    EXPECT_EQ(token.status().message().find(secretish), std::string::npos);
    EXPECT_EQ(token.status().message().find("kkkk"), std::string::npos);
  }
}

TEST(InternalAuthTest, OpenWithoutAToken) {
  InternalAuth open;
  EXPECT_FALSE(open.enabled());
  EXPECT_TRUE(open.Check(Metadata(), "worker").ok());
}

TEST(InternalAuthTest, AdmitsOnlyTheBearerOfTheToken) {
  InternalAuth auth(kToken);
  ASSERT_TRUE(auth.enabled());
  const std::string good = "Bearer " + kToken;
  const std::string lower = "bearer " + kToken;
  const std::string wrong = "Bearer " + std::string(40, 'j');
  const std::string prefix = "Bearer " + kToken.substr(0, 39);
  const std::string longer = "Bearer " + kToken + "k";
  const std::string bare = kToken;
  const std::string empty = "Bearer ";
  EXPECT_TRUE(auth.Check(Metadata{{"authorization", good}}, "worker").ok());
  EXPECT_TRUE(auth.Check(Metadata{{"authorization", lower}}, "worker").ok());
  for (const std::string* value : {&wrong, &prefix, &longer, &bare, &empty}) {
    grpc::Status status =
        auth.Check(Metadata{{"authorization", *value}}, "memory_store");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << *value;
    EXPECT_NE(status.error_message().find("memory_store is internal"),
              std::string::npos);
    EXPECT_EQ(status.error_message().find("kkkk"), std::string::npos);
  }
  EXPECT_EQ(auth.Check(Metadata(), "worker").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(auth.Check(Metadata{{"x-other", good}}, "worker").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace longctx
