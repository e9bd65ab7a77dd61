// MemoryStoreServiceImpl: the gRPC face of a BlockStore
// (proto/memory_store.proto), on gRPC's callback API: no thread per call,
// values streamed in chunks. Get answers with raw gRPC buffers in the
// GetResponse wire form (memory_store/get_response_wire.h): each chunk's bytes
// go to the socket straight from the value RocksDB read, with no protobuf
// copy.
#ifndef LONGCTX_MEMORY_STORE_MEMORY_STORE_SERVICE_IMPL_H_
#define LONGCTX_MEMORY_STORE_MEMORY_STORE_SERVICE_IMPL_H_

#include <cstdint>

#include "grpcpp/support/byte_buffer.h"
#include "memory_store/block_store.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "proto/memory_store.grpc.pb.h"
#include "services/common/internal_auth.h"

namespace longctx {

// MemoryStoreServiceOptions are the service's limits.
struct MemoryStoreServiceOptions {
  // Largest block accepted by Put, in bytes (all parts). Default: 512 MiB.
  int64_t max_block_bytes = 512ll << 20;
  // Largest chunk sent by Get, in bytes. Default: 1 MiB.
  int chunk_bytes = 1 << 20;
  // Most keys in one Contains or Delete call. Default: 65536.
  int max_keys_per_call = 65536;
  // Who may call (--internal_token_file). Default: anyone.
  InternalAuth auth;
};

// MemoryStoreServiceImpl serves `store` (not owned). Thread-safe.
class MemoryStoreServiceImpl final
    : public memory_store::v1::MemoryStore::WithRawCallbackMethod_Get<
          memory_store::v1::MemoryStore::CallbackService> {
 public:
  MemoryStoreServiceImpl(BlockStore* store,
                         const MemoryStoreServiceOptions& options,
                         prometheus::Registry& registry);

  grpc::ServerReadReactor<memory_store::v1::PutRequest>* Put(
      grpc::CallbackServerContext* context,
      memory_store::v1::PutResponse* response) override;
  // Get takes a GetRequest and streams GetResponse messages, both as their
  // wire bytes.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Get(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Contains(
      grpc::CallbackServerContext* context,
      const memory_store::v1::ContainsRequest* request,
      memory_store::v1::ContainsResponse* response) override;
  grpc::ServerUnaryReactor* Delete(
      grpc::CallbackServerContext* context,
      const memory_store::v1::DeleteRequest* request,
      memory_store::v1::DeleteResponse* response) override;
  grpc::ServerUnaryReactor* GetStats(
      grpc::CallbackServerContext* context,
      const memory_store::v1::GetStatsRequest* request,
      memory_store::v1::StoreStats* response) override;

  // UpdateGauges copies the store's counters into the size gauges.
  void UpdateGauges();

  // Counters the reactors update (and the local read server).
  struct Counters {
    prometheus::Counter* blocks_written;
    prometheus::Counter* bytes_written;
    prometheus::Counter* blocks_read;
    prometheus::Counter* bytes_read;
    prometheus::Counter* read_misses;
    prometheus::Counter* evictions;
    prometheus::Counter* put_conflicts;
    prometheus::Gauge* blocks;
    prometheus::Gauge* bytes;
  };
  const Counters& counters() const { return counters_; }

 private:
  BlockStore* const store_;
  const MemoryStoreServiceOptions options_;
  Counters counters_;
};

}  // namespace longctx

#endif  // LONGCTX_MEMORY_STORE_MEMORY_STORE_SERVICE_IMPL_H_
