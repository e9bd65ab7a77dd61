// InProcessStore: a memory_store shard running inside the test process (RocksDB
// in a fresh temporary folder, its gRPC service on a loopback port), for the
// tests of everything that offloads and restores.
#ifndef LONGCTX_MEMORY_STORE_TESTING_IN_PROCESS_STORE_H_
#define LONGCTX_MEMORY_STORE_TESTING_IN_PROCESS_STORE_H_

#include <memory>
#include <string>

#include "memory_store/block_store.h"
#include "memory_store/memory_store_service_impl.h"
#include "memory_store/store_client.h"
#include "prometheus/registry.h"
#include "services/common/grpc_server.h"
#include "services/common/net_address.h"

namespace longctx::testing {

// InProcessStore is one memory_store shard in the test process. Not
// thread-safe to Stop while others use it; its store and client are.
class InProcessStore {
 public:
  // Start opens a BlockStore in a new temporary folder (options.path is
  // replaced) and serves it on 127.0.0.1 at a free port. Aborts on failure.
  static std::unique_ptr<InProcessStore> Start(BlockStoreOptions options = {});

  HostPort address() const { return {"127.0.0.1", port_}; }
  BlockStore& store() { return *store_; }
  prometheus::Registry& registry() { return registry_; }

  // A client of this shard alone, made with `options`.
  std::unique_ptr<StoreClient> NewClient(StoreClientOptions options = {});

  // Stop takes the shard off the network (the store stays open): its
  // clients see it as down.
  void Stop() { server_.reset(); }

 private:
  InProcessStore() = default;

  prometheus::Registry registry_;
  std::unique_ptr<BlockStore> store_;
  std::unique_ptr<MemoryStoreServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  int port_ = 0;
};

}  // namespace longctx::testing

#endif  // LONGCTX_MEMORY_STORE_TESTING_IN_PROCESS_STORE_H_
