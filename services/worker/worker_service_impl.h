// WorkerServiceImpl: the gRPC face of one worker rank (proto/worker.proto).
#ifndef LONGCTX_SERVICES_WORKER_WORKER_SERVICE_IMPL_H_
#define LONGCTX_SERVICES_WORKER_WORKER_SERVICE_IMPL_H_

#include <atomic>
#include <string>

#include "proto/worker.grpc.pb.h"
#include "services/worker/engine.h"

namespace longctx {

// WorkerIdentity is where a rank stands in its group.
struct WorkerIdentity {
  std::string group_id = "group-0";  // --group_id
  int rank = 0;                      // --rank, in [0, group_size)
  int group_size = 1;                // --group_size
};

// WorkerServiceImpl answers the gateway for this rank. Thread-safe.
class WorkerServiceImpl final : public worker::v1::Worker::CallbackService {
 public:
  // `engine` and `pool` are not owned and must outlive the service. A rank
  // other than its group's rank 0 has no engine (null): it refuses Generate
  // with FAILED_PRECONDITION. `pool` is the group's (its block ids) on rank 0.
  WorkerServiceImpl(const WorkerIdentity& identity, std::string fingerprint_hex,
                    Engine* engine, const KvBlockPool* pool);

  grpc::ServerWriteReactor<worker::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context,
      const worker::v1::GenerateRequest* request) override;

  grpc::ServerUnaryReactor* GetStatus(
      grpc::CallbackServerContext* context,
      const worker::v1::GetStatusRequest* request,
      worker::v1::WorkerStatus* response) override;

  // SetReady marks the rank ready (model loaded, group complete).
  void SetReady(bool ready) { ready_ = ready; }

 private:
  const WorkerIdentity identity_;
  const std::string fingerprint_hex_;
  Engine* const engine_;
  const KvBlockPool* const pool_;
  std::atomic<bool> ready_{false};
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_WORKER_WORKER_SERVICE_IMPL_H_
