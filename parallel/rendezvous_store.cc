#include "parallel/rendezvous_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gloo/common/error.h"
#include "grpcpp/grpcpp.h"
#include "services/common/status_util.h"

namespace longctx {
namespace {

[[noreturn]] void Throw(const absl::Status& status) {
  throw gloo::IoException(std::string(status.message()));
}

}  // namespace

RendezvousStore::RendezvousStore(const std::string& address, std::string scope,
                                 absl::Duration timeout,
                                 const ChannelSecurity& security)
    : stub_(rendezvous::v1::Rendezvous::NewStub(security.NewChannel(address))),
      scope_(std::move(scope)),
      timeout_(timeout) {}

absl::Status RendezvousStore::Set(const std::string& key,
                                  const std::string& value) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  context.set_wait_for_ready(true);  // The gateway may start after the workers.
  rendezvous::v1::SetRequest request;
  request.set_key(absl::StrCat(scope_, "/", key));
  request.set_value(value);
  rendezvous::v1::SetResponse response;
  return FromGrpcStatus(stub_->Set(&context, request, &response));
}

absl::StatusOr<std::vector<std::string>> RendezvousStore::Get(
    const std::vector<std::string>& keys, absl::Duration wait) {
  grpc::ClientContext context;
  context.set_deadline(
      absl::ToChronoTime(absl::Now() + wait + absl::Seconds(5)));
  context.set_wait_for_ready(true);
  rendezvous::v1::GetRequest request;
  for (const std::string& key : keys) {
    request.add_keys(absl::StrCat(scope_, "/", key));
  }
  request.set_wait_ms(absl::ToInt64Milliseconds(wait));
  rendezvous::v1::GetResponse response;
  grpc::Status status = stub_->Get(&context, request, &response);
  if (!status.ok()) {
    // Gloo names ranks by their number alone: say "rank N" to the operator.
    std::string message = status.error_message();
    message =
        absl::StrReplaceAll(message, {{absl::StrCat(scope_, "/"), "rank "}});
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("group ", scope_, ": ", message));
  }
  return std::vector<std::string>(response.values().begin(),
                                  response.values().end());
}

void RendezvousStore::set(const std::string& key,
                          const std::vector<char>& data) {
  absl::Status status = Set(key, std::string(data.begin(), data.end()));
  if (!status.ok()) Throw(status);
}

std::vector<char> RendezvousStore::get(const std::string& key) {
  absl::StatusOr<std::vector<std::string>> values = Get({key}, timeout_);
  if (!values.ok()) Throw(values.status());
  return std::vector<char>((*values)[0].begin(), (*values)[0].end());
}

void RendezvousStore::wait(const std::vector<std::string>& keys) {
  wait(keys, std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout_)));
}

void RendezvousStore::wait(const std::vector<std::string>& keys,
                           const std::chrono::milliseconds& timeout) {
  absl::StatusOr<std::vector<std::string>> values =
      Get(keys, absl::Milliseconds(timeout.count()));
  if (!values.ok()) Throw(values.status());
}

}  // namespace longctx
