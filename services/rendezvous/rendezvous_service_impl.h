// RendezvousServiceImpl: an in-memory key-value store with blocking reads
// (proto/rendezvous.proto), through which the ranks of worker groups meet. The
// gateway serves it on its internal listener only (--internal_listen_address),
// never on the public one.
#ifndef LONGCTX_SERVICES_RENDEZVOUS_RENDEZVOUS_SERVICE_IMPL_H_
#define LONGCTX_SERVICES_RENDEZVOUS_RENDEZVOUS_SERVICE_IMPL_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "proto/rendezvous.grpc.pb.h"
#include "services/common/internal_auth.h"

namespace longctx {

// Bounds of what the store holds: a key, a value, keys per Get, every key
// and value together, and the Gets waiting at once (each holds a thread of
// gRPC's pool). A full store or too many waiters get RESOURCE_EXHAUSTED.
inline constexpr size_t kRendezvousMaxKeyBytes = 256;
inline constexpr size_t kRendezvousMaxValueBytes = 64 << 10;
inline constexpr int kRendezvousMaxKeysPerGet = 1024;
inline constexpr size_t kRendezvousMaxStoredBytes = 64 << 20;
inline constexpr int kRendezvousMaxWaiters = 256;

// RendezvousServiceImpl is thread-safe. Get waits in gRPC's sync thread pool (a
// handful of ranks wait at a time, only while groups form).
class RendezvousServiceImpl final : public rendezvous::v1::Rendezvous::Service {
 public:
  // Callers must pass `auth` (the internal token; default: open). Client
  // certificates, when the internal listener asks for them, are checked by
  // its TLS handshake.
  explicit RendezvousServiceImpl(InternalAuth auth = InternalAuth())
      : auth_(std::move(auth)) {}

  grpc::Status Set(grpc::ServerContext* context,
                   const rendezvous::v1::SetRequest* request,
                   rendezvous::v1::SetResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context,
                   const rendezvous::v1::GetRequest* request,
                   rendezvous::v1::GetResponse* response) override;

 private:
  const InternalAuth auth_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  // Bytes of every key and value in values_.
  size_t stored_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int waiters_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_RENDEZVOUS_RENDEZVOUS_SERVICE_IMPL_H_
