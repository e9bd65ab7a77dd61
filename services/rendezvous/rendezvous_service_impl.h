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

// Protocol bounds: a key, a value, keys per Get (INVALID_ARGUMENT beyond).
inline constexpr size_t kRendezvousMaxKeyBytes = 256;
inline constexpr size_t kRendezvousMaxValueBytes = 64 << 10;
inline constexpr int kRendezvousMaxKeysPerGet = 1024;

// RendezvousLimits bound what the store holds: every key and value together
// (--rendezvous_max_bytes) and the Gets waiting at once, each holding a
// thread of gRPC's pool (--rendezvous_max_waiters). Beyond them:
// RESOURCE_EXHAUSTED.
struct RendezvousLimits {
  size_t max_stored_bytes = 64 << 20;
  int max_waiters = 256;
};

// RendezvousServiceImpl is thread-safe. Get waits in gRPC's sync thread pool (a
// handful of ranks wait at a time, only while groups form).
class RendezvousServiceImpl final : public rendezvous::v1::Rendezvous::Service {
 public:
  // Callers must pass `auth` (the internal token; default: open). Client
  // certificates, when the internal listener asks for them, are checked by
  // its TLS handshake.
  explicit RendezvousServiceImpl(InternalAuth auth = InternalAuth(),
                                 RendezvousLimits limits = RendezvousLimits())
      : auth_(std::move(auth)), limits_(limits) {}

  grpc::Status Set(grpc::ServerContext* context,
                   const rendezvous::v1::SetRequest* request,
                   rendezvous::v1::SetResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context,
                   const rendezvous::v1::GetRequest* request,
                   rendezvous::v1::GetResponse* response) override;

 private:
  const InternalAuth auth_;
  const RendezvousLimits limits_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  // Bytes of every key and value in values_.
  size_t stored_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int waiters_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_RENDEZVOUS_RENDEZVOUS_SERVICE_IMPL_H_
