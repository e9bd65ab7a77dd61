// WorkerServiceImpl: the gRPC face of one worker rank (proto/worker.proto).
#ifndef LONGCTX_SERVICES_WORKER_WORKER_SERVICE_IMPL_H_
#define LONGCTX_SERVICES_WORKER_WORKER_SERVICE_IMPL_H_

#include <atomic>
#include <string>

#include "proto/worker.grpc.pb.h"

namespace longctx {

// WorkerIdentity is where a rank stands in its group.
struct WorkerIdentity {
  std::string group_id = "group-0";  // --group_id
  int rank = 0;                      // --rank, in [0, group_size)
  int group_size = 1;                // --group_size
};

// WorkerServiceImpl answers the gateway for this rank. Thread-safe.
//
// Generate is not overridden yet: it answers UNIMPLEMENTED until the inference
// engine is wired in.
class WorkerServiceImpl final : public worker::v1::Worker::CallbackService {
 public:
  WorkerServiceImpl(const WorkerIdentity& identity, std::string fingerprint_hex,
                    int block_size);

  grpc::ServerUnaryReactor* GetStatus(
      grpc::CallbackServerContext* context,
      const worker::v1::GetStatusRequest* request,
      worker::v1::WorkerStatus* response) override;

  // SetReady marks the rank ready (model loaded, group complete).
  void SetReady(bool ready) { ready_ = ready; }

 private:
  const WorkerIdentity identity_;
  const std::string fingerprint_hex_;
  const int block_size_;
  std::atomic<bool> ready_{false};
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_WORKER_WORKER_SERVICE_IMPL_H_
