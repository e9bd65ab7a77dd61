// memory_store durability: a block whose Put was acknowledged survives kill -9.
#include <signal.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/memory_store.grpc.pb.h"
#include "services/common/testing/temp_dir.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using memory_store::v1::MemoryStore;

std::string Key(int i) {
  std::string key(32, '\0');
  for (int b = 0; b < 4; ++b) key[b] = static_cast<char>(i >> (8 * b));
  key[31] = 'k';
  return key;
}

// The content of block i: deterministic, so a reader can check every byte.
std::vector<std::string> Parts(int i) {
  std::mt19937 rng(i);
  std::vector<std::string> parts(3);
  for (size_t p = 0; p < parts.size(); ++p) {
    parts[p].resize(p == 0 ? 64 : 200000 + 17 * i);
    for (char& c : parts[p]) c = static_cast<char>(rng());
  }
  return parts;
}

grpc::Status Put(MemoryStore::Stub* stub, int i) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  memory_store::v1::PutResponse response;
  auto writer = stub->Put(&context, &response);
  memory_store::v1::PutRequest header;
  header.mutable_header()->set_key(Key(i));
  std::vector<std::string> parts = Parts(i);
  header.mutable_header()->set_num_parts(static_cast<int>(parts.size()));
  bool ok = writer->Write(header);
  for (size_t p = 0; ok && p < parts.size(); ++p) {
    memory_store::v1::PutRequest chunk;
    chunk.mutable_chunk()->set_part(static_cast<int>(p));
    chunk.mutable_chunk()->set_data(parts[p]);
    ok = writer->Write(chunk);
  }
  writer->WritesDone();
  return writer->Finish();
}

grpc::Status Get(MemoryStore::Stub* stub, int i,
                 std::vector<std::string>* parts) {
  grpc::ClientContext context;
  memory_store::v1::GetRequest request;
  request.set_key(Key(i));
  auto reader = stub->Get(&context, request);
  memory_store::v1::GetResponse response;
  std::string current;
  parts->clear();
  while (reader->Read(&response)) {
    current += response.data();
    if (response.part_end()) parts->push_back(std::exchange(current, ""));
  }
  return reader->Finish();
}

testing::Process StartStore(const testing::Endpoint& e, const std::string& dir,
                            const std::string& log) {
  std::vector<std::string> argv = {
      testing::RunfilePath("memory_store/memory_store"), "--data_dir=" + dir};
  for (const auto& f : testing::CommonFlags(e)) argv.push_back(f);
  auto p = testing::Process::Start(argv, log);
  EXPECT_TRUE(p.ok());
  EXPECT_TRUE(testing::WaitForServing(e.address(), absl::Seconds(60)).ok());
  return std::move(*p);
}

TEST(StoreCrashTest, NoAcknowledgedBlockIsLostOrCorruptedByKill9) {
  const std::string dir = testing::NewTempDir("crash");
  testing::Endpoint e = testing::NewEndpoint();
  testing::Process store = StartStore(e, dir + "/db", dir + "/store1.log");
  auto stub = MemoryStore::NewStub(
      grpc::CreateChannel(e.address(), grpc::InsecureChannelCredentials()));

  // A writer streams blocks; the test kills the store while it writes.
  std::atomic<int> acknowledged{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      if (!Put(stub.get(), i).ok()) break;
      acknowledged = i + 1;  // Blocks 0..i are acknowledged.
    }
  });
  while (acknowledged.load() < 40) absl::SleepFor(absl::Milliseconds(5));
  store.Signal(SIGKILL);
  ASSERT_TRUE(store.Wait(absl::Seconds(10)).ok());
  stop = true;
  writer.join();
  const int acked = acknowledged.load();
  ASSERT_GE(acked, 40);

  testing::Process restarted = StartStore(e, dir + "/db", dir + "/store2.log");
  stub = MemoryStore::NewStub(
      grpc::CreateChannel(e.address(), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < acked; ++i) {
    std::vector<std::string> parts;
    grpc::Status status = Get(stub.get(), i, &parts);
    ASSERT_TRUE(status.ok()) << "acknowledged block " << i << " of " << acked
                             << " lost: " << status.error_message();
    ASSERT_EQ(parts, Parts(i)) << "block " << i << " corrupted";
  }
  // The block in flight at the kill is either whole or absent, never partial.
  std::vector<std::string> parts;
  grpc::Status in_flight = Get(stub.get(), acked, &parts);
  if (in_flight.ok()) {
    EXPECT_EQ(parts, Parts(acked));
  }
  restarted.Signal(SIGTERM);
  EXPECT_EQ(*restarted.Wait(absl::Seconds(30)), 0);
}

}  // namespace
}  // namespace longctx
