#include "services/rendezvous/rendezvous_service_impl.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace longctx {
namespace {

// Waits end at least this often so a cancelled call stops waiting promptly.
constexpr absl::Duration kPollInterval = absl::Milliseconds(200);

}  // namespace

grpc::Status RendezvousServiceImpl::Set(
    grpc::ServerContext* context, const rendezvous::v1::SetRequest* request,
    rendezvous::v1::SetResponse* /*response*/) {
  grpc::Status auth = auth_.Check(*context, "Rendezvous");
  if (!auth.ok()) return auth;
  if (request->key().empty() ||
      request->key().size() > kRendezvousMaxKeyBytes) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("key has ", request->key().size(),
                     " bytes; it must have 1 to ", kRendezvousMaxKeyBytes));
  }
  if (request->value().size() > kRendezvousMaxValueBytes) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("value has ", request->value().size(),
                     " bytes; the limit is ", kRendezvousMaxValueBytes));
  }
  absl::MutexLock lock(&mu_);
  auto it = values_.find(request->key());
  const size_t old_bytes =
      it == values_.end() ? 0 : it->first.size() + it->second.size();
  const size_t new_bytes = request->key().size() + request->value().size();
  if (stored_bytes_ - old_bytes + new_bytes > limits_.max_stored_bytes) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the rendezvous store is full (", limits_.max_stored_bytes,
                     " bytes of keys and values, --rendezvous_max_bytes)"));
  }
  stored_bytes_ = stored_bytes_ - old_bytes + new_bytes;
  if (it == values_.end()) {
    values_.emplace(request->key(), request->value());
  } else {
    it->second = request->value();
  }
  return grpc::Status::OK;
}

grpc::Status RendezvousServiceImpl::Get(
    grpc::ServerContext* context, const rendezvous::v1::GetRequest* request,
    rendezvous::v1::GetResponse* response) {
  grpc::Status auth = auth_.Check(*context, "Rendezvous");
  if (!auth.ok()) return auth;
  if (request->keys_size() > kRendezvousMaxKeysPerGet) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("keys has ", request->keys_size(),
                     " entries; the limit is ", kRendezvousMaxKeysPerGet));
  }
  absl::Time deadline = absl::Now() + absl::Milliseconds(std::max<int64_t>(
                                          0, request->wait_ms()));
  deadline = std::min(deadline, absl::FromChrono(context->deadline()));
  absl::MutexLock lock(&mu_);
  if (waiters_ >= limits_.max_waiters) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat(limits_.max_waiters,
                                     " Rendezvous Gets are waiting already "
                                     "(--rendezvous_max_waiters)"));
  }
  auto all_present = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::string& key : request->keys()) {
      if (!values_.contains(key)) return false;
    }
    return true;
  };
  ++waiters_;
  bool timed_out = false;
  while (!all_present()) {
    const absl::Time now = absl::Now();
    if (now >= deadline || context->IsCancelled()) {
      timed_out = true;
      break;
    }
    // Woken by any Set (the mutex's condition is re-evaluated on every unlock).
    mu_.AwaitWithDeadline(absl::Condition(&all_present),
                          std::min(deadline, now + kPollInterval));
  }
  --waiters_;
  if (timed_out) {
    std::vector<std::string> missing;
    for (const std::string& key : request->keys()) {
      if (!values_.contains(key)) missing.push_back(key);
    }
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        absl::StrCat("still missing after ", request->wait_ms(),
                                     " ms: ", absl::StrJoin(missing, ", ")));
  }
  for (const std::string& key : request->keys()) {
    response->add_values(values_.at(key));
  }
  return grpc::Status::OK;
}

}  // namespace longctx
