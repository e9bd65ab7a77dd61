// GlooCommunicator: the Communicator between CPU ranks, over Gloo's TCP
// transport.
#ifndef LONGCTX_PARALLEL_GLOO_COMMUNICATOR_H_
#define LONGCTX_PARALLEL_GLOO_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gloo/rendezvous/store.h"
#include "parallel/communicator.h"

namespace gloo {
class Context;
}  // namespace gloo

namespace longctx {

// GlooOptions configures the connection of one rank.
struct GlooOptions {
  int rank = 0;
  int size = 1;
  // Address of this rank's TCP listener (peers connect to it). Default:
  // loopback.
  std::string hostname = "127.0.0.1";
  // How long each operation may take.
  absl::Duration timeout = absl::Seconds(30);
  // How long connecting to the other ranks may take; zero means `timeout`.
  absl::Duration connect_timeout = absl::ZeroDuration();
};

class GlooCommunicator : public Communicator {
 public:
  // Connect forms the group through `store` (every rank of the group calls it
  // with the same store contents). DEADLINE_EXCEEDED, naming the ranks that
  // never showed up where the store allows, if the group does not form within
  // options.timeout.
  static absl::StatusOr<std::unique_ptr<GlooCommunicator>> Connect(
      gloo::rendezvous::Store& store, const GlooOptions& options);

  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::StatusOr<std::unique_ptr<PendingOp>> Isend(const void* data,
                                                   size_t bytes, int peer,
                                                   uint64_t tag) override;
  absl::StatusOr<std::unique_ptr<PendingOp>> Irecv(void* data, size_t bytes,
                                                   int peer,
                                                   uint64_t tag) override;

  // Fails waits whose peer's connection has failed (gloo_communicator.cc).
  class PeerWatch;

 private:
  GlooCommunicator(std::shared_ptr<gloo::Context> context, int rank, int size,
                   absl::Duration timeout);

  std::shared_ptr<gloo::Context> context_;
  std::shared_ptr<PeerWatch> watch_;
  const int rank_;
  const int size_;
  const absl::Duration timeout_;
};

}  // namespace longctx

#endif  // LONGCTX_PARALLEL_GLOO_COMMUNICATOR_H_
