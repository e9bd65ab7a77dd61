#include "services/rendezvous/rendezvous_service_impl.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpcpp/security/auth_context.h"

namespace longctx {
namespace {

constexpr size_t kMaxKeyBytes = 256;
constexpr size_t kMaxValueBytes = 64 << 10;
constexpr int kMaxKeys = 1024;
// Waits end at least this often so a cancelled call stops waiting promptly.
constexpr absl::Duration kPollInterval = absl::Milliseconds(200);

}  // namespace

grpc::Status RendezvousServiceImpl::Authenticate(
    grpc::ServerContext* context) const {
  if (!require_client_certificate_) return grpc::Status::OK;
  // A TLS peer is authenticated only by a certificate the server verified.
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "Rendezvous needs a client certificate signed by the "
                      "gateway's --tls_client_ca");
}

grpc::Status RendezvousServiceImpl::Set(
    grpc::ServerContext* context, const rendezvous::v1::SetRequest* request,
    rendezvous::v1::SetResponse* /*response*/) {
  grpc::Status auth = Authenticate(context);
  if (!auth.ok()) return auth;
  if (request->key().empty() || request->key().size() > kMaxKeyBytes) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("key has ", request->key().size(),
                     " bytes; it must have 1 to ", kMaxKeyBytes));
  }
  if (request->value().size() > kMaxValueBytes) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("value has ", request->value().size(),
                                     " bytes; the limit is ", kMaxValueBytes));
  }
  absl::MutexLock lock(&mu_);
  values_[request->key()] = request->value();
  return grpc::Status::OK;
}

grpc::Status RendezvousServiceImpl::Get(
    grpc::ServerContext* context, const rendezvous::v1::GetRequest* request,
    rendezvous::v1::GetResponse* response) {
  grpc::Status auth = Authenticate(context);
  if (!auth.ok()) return auth;
  if (request->keys_size() > kMaxKeys) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("keys has ", request->keys_size(),
                                     " entries; the limit is ", kMaxKeys));
  }
  absl::Time deadline = absl::Now() + absl::Milliseconds(std::max<int64_t>(
                                          0, request->wait_ms()));
  deadline = std::min(deadline, absl::FromChrono(context->deadline()));
  absl::MutexLock lock(&mu_);
  auto all_present = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::string& key : request->keys()) {
      if (!values_.contains(key)) return false;
    }
    return true;
  };
  while (!all_present()) {
    const absl::Time now = absl::Now();
    if (now >= deadline || context->IsCancelled()) {
      std::vector<std::string> missing;
      for (const std::string& key : request->keys()) {
        if (!values_.contains(key)) missing.push_back(key);
      }
      return grpc::Status(
          grpc::StatusCode::DEADLINE_EXCEEDED,
          absl::StrCat("still missing after ", request->wait_ms(),
                       " ms: ", absl::StrJoin(missing, ", ")));
    }
    // Woken by any Set (the mutex's condition is re-evaluated on every unlock).
    mu_.AwaitWithDeadline(absl::Condition(&all_present),
                          std::min(deadline, now + kPollInterval));
  }
  for (const std::string& key : request->keys()) {
    response->add_values(values_.at(key));
  }
  return grpc::Status::OK;
}

}  // namespace longctx
