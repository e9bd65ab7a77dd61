// RendezvousStore: Gloo's rendezvous store over the gateway's Rendezvous RPC,
// with every key scoped to one group, so a worker group forms across machines.
#ifndef LONGCTX_PARALLEL_RENDEZVOUS_STORE_H_
#define LONGCTX_PARALLEL_RENDEZVOUS_STORE_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gloo/rendezvous/store.h"
#include "proto/rendezvous.grpc.pb.h"
#include "services/common/tls.h"

namespace longctx {

// RendezvousStore is thread-safe. As Gloo's Store interface requires, failures
// are thrown as gloo::IoException (Gloo catches nothing;
// GlooCommunicator::Connect turns them into a Status). Missing keys after a
// wait are named in the message, as "rank N" for Gloo's per-rank keys.
class RendezvousStore : public gloo::rendezvous::Store {
 public:
  // `address` is the gateway's host:port; `scope` prefixes every key (the group
  // id and the purpose, e.g. "group-0/gloo"); `security` makes the channel
  // (the internal TLS flags; default plaintext).
  RendezvousStore(const std::string& address, std::string scope,
                  absl::Duration timeout,
                  const ChannelSecurity& security = ChannelSecurity());

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

  // The same operations returning Status, for callers outside Gloo (NCCL's id).
  absl::Status Set(const std::string& key, const std::string& value);
  absl::StatusOr<std::vector<std::string>> Get(
      const std::vector<std::string>& keys, absl::Duration wait);

 private:
  std::unique_ptr<rendezvous::v1::Rendezvous::Stub> stub_;
  const std::string scope_;
  const absl::Duration timeout_;
};

}  // namespace longctx

#endif  // LONGCTX_PARALLEL_RENDEZVOUS_STORE_H_
