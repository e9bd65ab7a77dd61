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
#include "services/common/tls.h"

namespace longctx {
namespace {

using memory_store::v1::GetRequest;
using memory_store::v1::GetResponse;
using memory_store::v1::MemoryStore;
using memory_store::v1::PutRequest;
using memory_store::v1::PutResponse;
using ::testing::HasSubstr;

std::string Key(int i) { return std::string(31, 'k') + static_cast<char>(i); }

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

  // Sends `messages` as one Put stream; the response goes to *out when given.
  grpc::Status Put(const std::vector<PutRequest>& messages,
                   PutResponse* out = nullptr) {
    grpc::ClientContext context;
    PutResponse local;
    PutResponse& response = out != nullptr ? *out : local;
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

// A stored block is never replaced: the same block again is acknowledged as
// already stored; another block under its key is ALREADY_EXISTS, counted in
// the stats and the metrics, and the first block stays.
TEST_F(MemoryStoreServiceTest, PutNeverReplacesAStoredBlock) {
  PutResponse response;
  ASSERT_TRUE(Put(Block(Key(6), {"header", "layer"}, 4), &response).ok());
  EXPECT_FALSE(response.already_stored());
  ASSERT_TRUE(Put(Block(Key(6), {"header", "layer"}, 3), &response).ok());
  EXPECT_TRUE(response.already_stored());
  grpc::Status refused = Put(Block(Key(6), {"forged", "layer"}, 4));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(refused.error_message(), HasSubstr("never replaced"));
  std::vector<std::string> got;
  ASSERT_TRUE(Get(Key(6), &got).ok());
  EXPECT_THAT(got, ::testing::ElementsAre("header", "layer"));
  grpc::ClientContext context;
  memory_store::v1::StoreStats stats;
  ASSERT_TRUE(
      stub_->GetStats(&context, memory_store::v1::GetStatsRequest(), &stats)
          .ok());
  EXPECT_EQ(stats.put_conflicts(), 1);
  EXPECT_EQ(stats.blocks(), 1);
  double conflicts = -1, written = -1;
  for (const auto& family : registry_.Collect()) {
    if (family.name == "longctx_store_put_conflicts_total") {
      conflicts = family.metric.at(0).counter.value;
    }
    if (family.name == "longctx_store_blocks_written_total") {
      written = family.metric.at(0).counter.value;
    }
  }
  EXPECT_EQ(conflicts, 1);
  EXPECT_EQ(written, 1);  // The no-op Put wrote nothing.
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

// Get reads its request from raw bytes: bytes that are not a GetRequest are
// refused naming the problem, and the store still serves afterwards.
TEST_F(MemoryStoreServiceTest, GetOfBytesThatAreNotAGetRequestIsRefused) {
  ASSERT_TRUE(Put(Block(Key(5), {"head", "layer"}, 10)).ok());
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                          grpc::InsecureChannelCredentials());
  const grpc::internal::RpcMethod method(
      "/longctx.memory_store.v1.MemoryStore/Get",
      grpc::internal::RpcMethod::SERVER_STREAMING, channel);
  // A key whose length runs past the end, packed parts cut short, and a
  // varint of 11 bytes.
  for (const std::string& bytes :
       {std::string("\x0a\xff\xff\x03kk", 6), std::string("\x12\x05\x01", 3),
        std::string(11, '\xff')}) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
        grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
            channel.get(), method, &context, request));
    grpc::ByteBuffer response;
    EXPECT_FALSE(reader->Read(&response));
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("GetRequest"))
        << ::testing::PrintToString(bytes);
  }
  std::vector<std::string> got;
  ASSERT_TRUE(Get(Key(5), &got).ok());
  EXPECT_EQ(got, (std::vector<std::string>{"head", "layer"}));
}

// With an internal token, every method refuses callers without it: nobody
// else can store, read, probe or delete blocks.
TEST(MemoryStoreAuthTest, EveryMethodNeedsTheInternalToken) {
  prometheus::Registry registry;
  auto store = *BlockStore::Open({testing::NewTempDir("memory_store_auth")});
  const std::string token(48, 's');
  MemoryStoreServiceOptions options;
  options.auth = InternalAuth(token);
  MemoryStoreServiceImpl service(store.get(), options, registry);
  GrpcServerOptions server_options;
  server_options.listen = {"127.0.0.1", 0};
  auto server = *GrpcServer::Start(server_options, {&service});
  const std::string address = "127.0.0.1:" + std::to_string(server->port());

  // Each call's status, made through `security`'s channel.
  auto calls = [&](const ChannelSecurity& security) {
    auto stub = MemoryStore::NewStub(security.NewChannel(address));
    std::vector<grpc::Status> statuses;
    {
      grpc::ClientContext context;
      PutResponse response;
      auto writer = stub->Put(&context, &response);
      PutRequest header;
      header.mutable_header()->set_key(Key(1));
      header.mutable_header()->set_num_parts(1);
      PutRequest chunk;
      chunk.mutable_chunk()->set_part(0);
      chunk.mutable_chunk()->set_data("block");
      if (writer->Write(header)) writer->Write(chunk);
      writer->WritesDone();
      statuses.push_back(writer->Finish());
    }
    {
      grpc::ClientContext context;
      GetRequest request;
      request.set_key(Key(1));
      auto reader = stub->Get(&context, request);
      GetResponse response;
      while (reader->Read(&response)) {
      }
      statuses.push_back(reader->Finish());
    }
    {
      grpc::ClientContext context;
      memory_store::v1::ContainsRequest request;
      request.add_keys(Key(1));
      memory_store::v1::ContainsResponse response;
      statuses.push_back(stub->Contains(&context, request, &response));
    }
    {
      grpc::ClientContext context;
      memory_store::v1::GetStatsRequest request;
      memory_store::v1::StoreStats response;
      statuses.push_back(stub->GetStats(&context, request, &response));
    }
    {
      grpc::ClientContext context;
      memory_store::v1::DeleteRequest request;
      request.add_keys(Key(1));
      memory_store::v1::DeleteResponse response;
      statuses.push_back(stub->Delete(&context, request, &response));
    }
    return statuses;
  };
  for (const ChannelSecurity& stranger :
       {ChannelSecurity(),
        ChannelSecurity().WithBearerToken(std::string(48, 'x'))}) {
    for (const grpc::Status& status : calls(stranger)) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
      EXPECT_THAT(status.error_message(), HasSubstr("internal token"));
    }
  }
  EXPECT_EQ(store->Stats().blocks, 0);
  for (const grpc::Status& status :
       calls(ChannelSecurity().WithBearerToken(token))) {
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
}

}  // namespace
}  // namespace longctx
