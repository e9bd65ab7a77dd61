// RendezvousServiceImpl: an in-memory key-value store with blocking reads
// (proto/rendezvous.proto), through which the ranks of worker groups meet.
#ifndef LONGCTX_SERVICES_RENDEZVOUS_RENDEZVOUS_SERVICE_IMPL_H_
#define LONGCTX_SERVICES_RENDEZVOUS_RENDEZVOUS_SERVICE_IMPL_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "proto/rendezvous.grpc.pb.h"

namespace longctx {

// RendezvousServiceImpl is thread-safe. Get waits in gRPC's sync thread pool (a
// handful of ranks wait at a time, only while groups form).
class RendezvousServiceImpl final : public rendezvous::v1::Rendezvous::Service {
 public:
  // With `require_client_certificate`, calls from a peer that did not present
  // a verified TLS client certificate fail with UNAUTHENTICATED: the gateway
  // serves this on its public port, where clients without certificates may
  // call the public API (--tls_client_ca). Default: open.
  explicit RendezvousServiceImpl(bool require_client_certificate = false)
      : require_client_certificate_(require_client_certificate) {}

  grpc::Status Set(grpc::ServerContext* context,
                   const rendezvous::v1::SetRequest* request,
                   rendezvous::v1::SetResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context,
                   const rendezvous::v1::GetRequest* request,
                   rendezvous::v1::GetResponse* response) override;

 private:
  grpc::Status Authenticate(grpc::ServerContext* context) const;

  const bool require_client_certificate_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_RENDEZVOUS_RENDEZVOUS_SERVICE_IMPL_H_
