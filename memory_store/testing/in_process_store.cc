#include "memory_store/testing/in_process_store.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "services/common/testing/temp_dir.h"

namespace longctx::testing {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "in_process_store: %s\n", what.c_str());
  std::abort();
}

}  // namespace

std::unique_ptr<InProcessStore> InProcessStore::Start(
    BlockStoreOptions options) {
  std::unique_ptr<InProcessStore> shard(new InProcessStore);
  options.path = NewTempDir("memory_store");
  auto store = BlockStore::Open(options);
  if (!store.ok()) Die(store.status().ToString());
  shard->store_ = *std::move(store);
  shard->service_ = std::make_unique<MemoryStoreServiceImpl>(
      shard->store_.get(), MemoryStoreServiceOptions(), shard->registry_);
  GrpcServerOptions server_options;
  server_options.listen = {"127.0.0.1", 0};
  auto server = GrpcServer::Start(server_options, {shard->service_.get()});
  if (!server.ok()) Die(server.status().ToString());
  shard->server_ = *std::move(server);
  shard->port_ = shard->server_->port();
  return shard;
}

std::unique_ptr<StoreClient> InProcessStore::NewClient(
    StoreClientOptions options) {
  auto client = StoreClient::Create({address()}, options);
  if (!client.ok()) Die(client.status().ToString());
  return *std::move(client);
}

}  // namespace longctx::testing
