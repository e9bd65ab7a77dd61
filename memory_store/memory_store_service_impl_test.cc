#include "memory_store/memory_store_service_impl.h"

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
#include "services/common/testing/temp_dir.h"

namespace longctx {
namespace {

using memory_store::v1::GetRequest;
using memory_store::v1::GetResponse;
using memory_store::v1::MemoryStore;
using memory_store::v1::PutRequest;
using memory_store::v1::PutResponse;
using ::testing::HasSubstr;

std::string Key(int i) { return std::string(15, 'k') + static_cast<char>(i); }

class MemoryStoreServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = *BlockStore::Open({testing::NewTempDir("memory_store_service")});
    MemoryStoreServiceOptions options;
    options.max_block_bytes = 16 << 20;
    service_ = std::make_unique<MemoryStoreServiceImpl>(store_.get(), options,
                                                        registry_);
    GrpcServerOptions server_options;
    server_options.listen = {"127.0.0.1", 0};
    server_ = *GrpcServer::Start(server_options, {service_.get()});
    stub_ = MemoryStore::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                            grpc::InsecureChannelCredentials()));
  }

  // Sends `messages` as one Put stream.
  grpc::Status Put(const std::vector<PutRequest>& messages) {
    grpc::ClientContext context;
    PutResponse response;
    auto writer = stub_->Put(&context, &response);
    for (const PutRequest& m : messages) {
      if (!writer->Write(m)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  static std::vector<PutRequest> Block(const std::string& key,
                                       const std::vector<std::string>& parts,
                                       size_t chunk) {
    std::vector<PutRequest> messages(1);
    messages[0].mutable_header()->set_key(key);
    messages[0].mutable_header()->set_num_parts(static_cast<int>(parts.size()));
    for (size_t p = 0; p < parts.size(); ++p) {
      size_t offset = 0;
      do {
        PutRequest m;
        m.mutable_chunk()->set_part(static_cast<int>(p));
        m.mutable_chunk()->set_data(parts[p].substr(offset, chunk));
        messages.push_back(m);
        offset += chunk;
      } while (offset < parts[p].size());
    }
    return messages;
  }

  // Reads a whole block back, part by part.
  grpc::Status Get(const std::string& key, std::vector<std::string>* parts,
                   std::vector<int> which = {}) {
    grpc::ClientContext context;
    GetRequest request;
    request.set_key(key);
    for (int p : which) request.add_parts(p);
    auto reader = stub_->Get(&context, request);
    GetResponse response;
    parts->clear();
    std::string current;
    while (reader->Read(&response)) {
      EXPECT_LE(response.data().size(), 1u << 20);
      current += response.data();
      if (response.part_end()) {
        parts->push_back(current);
        current.clear();
      }
    }
    return reader->Finish();
  }

  prometheus::Registry registry_;
  std::unique_ptr<BlockStore> store_;
  std::unique_ptr<MemoryStoreServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<MemoryStore::Stub> stub_;
};

TEST_F(MemoryStoreServiceTest, StreamsBlocksLargerThanTheGrpcMessageLimit) {
  std::mt19937 rng(7);
  std::vector<std::string> parts = {"header", std::string(5 << 20, '\0'), "",
                                    std::string(3, 'z')};
  for (char& c : parts[1]) c = static_cast<char>(rng());
  ASSERT_TRUE(Put(Block(Key(1), parts, 1 << 20)).ok());
  std::vector<std::string> got;
  ASSERT_TRUE(Get(Key(1), &got).ok());
  EXPECT_EQ(got, parts);
  // Selected parts, in the asked order.
  ASSERT_TRUE(Get(Key(1), &got, {3, 0}).ok());
  EXPECT_THAT(got, ::testing::ElementsAre("zzz", "header"));
}

TEST_F(MemoryStoreServiceTest, ContainsDeleteAndStats) {
  ASSERT_TRUE(Put(Block(Key(1), {"a", "bc"}, 1024)).ok());
  {
    grpc::ClientContext context;
    memory_store::v1::ContainsRequest request;
    request.add_keys(Key(1));
    request.add_keys(Key(2));
    memory_store::v1::ContainsResponse response;
    ASSERT_TRUE(stub_->Contains(&context, request, &response).ok());
    EXPECT_THAT(response.present(), ::testing::ElementsAre(true, false));
  }
  {
    grpc::ClientContext context;
    memory_store::v1::GetStatsRequest request;
    memory_store::v1::StoreStats stats;
    ASSERT_TRUE(stub_->GetStats(&context, request, &stats).ok());
    EXPECT_EQ(stats.blocks(), 1);
    EXPECT_EQ(stats.bytes(), 3);
  }
  {
    grpc::ClientContext context;
    memory_store::v1::DeleteRequest request;
    request.add_keys(Key(1));
    memory_store::v1::DeleteResponse response;
    ASSERT_TRUE(stub_->Delete(&context, request, &response).ok());
    EXPECT_EQ(response.deleted(), 1);
  }
  std::vector<std::string> got;
  EXPECT_EQ(Get(Key(1), &got).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(MemoryStoreServiceTest, MalformedStreamsStoreNothingAndSayWhy) {
  struct Case {
    std::vector<PutRequest> messages;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  // No header.
  cases.push_back({{}, grpc::StatusCode::INVALID_ARGUMENT, "without a header"});
  // Short key.
  auto short_key = Block("short", {"x"}, 10);
  cases.push_back(
      {short_key, grpc::StatusCode::INVALID_ARGUMENT, "header.key"});
  // Parts out of order.
  auto disorder = Block(Key(3), {"a", "b", "c"}, 10);
  std::swap(disorder[1], disorder[3]);
  cases.push_back({disorder, grpc::StatusCode::INVALID_ARGUMENT, "chunk.part"});
  // Stream ends before every part arrived.
  auto truncated = Block(Key(3), {"a", "b", "c"}, 10);
  truncated.pop_back();
  cases.push_back(
      {truncated, grpc::StatusCode::INVALID_ARGUMENT, "2 of 3 parts"});
  // Over --max_block_bytes.
  auto huge = Block(Key(3), {std::string(17 << 20, 'h')}, 1 << 20);
  cases.push_back(
      {huge, grpc::StatusCode::RESOURCE_EXHAUSTED, "--max_block_bytes"});
  for (const Case& c : cases) {
    grpc::Status status = Put(c.messages);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
  EXPECT_EQ(store_->Stats().blocks, 0);
}

TEST_F(MemoryStoreServiceTest, GetOfAnAbsentBlockOrPartFails) {
  std::vector<std::string> got;
  EXPECT_EQ(Get(Key(9), &got).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Put(Block(Key(4), {"only"}, 10)).ok());
  EXPECT_EQ(Get(Key(4), &got, {1}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace longctx
