// WorkerServiceImpl: the gRPC face of one worker rank (proto/worker.proto).
#ifndef LONGCTX_SERVICES_WORKER_WORKER_SERVICE_IMPL_H_
#define LONGCTX_SERVICES_WORKER_WORKER_SERVICE_IMPL_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "engine/engine.h"
#include "model/device_report.h"
#include "proto/worker.grpc.pb.h"
#include "services/common/internal_auth.h"

namespace longctx {

// WorkerIdentity is where a rank stands in its group.
struct WorkerIdentity {
  std::string group_id = "group-0";  // --group_id
  int rank = 0;                      // --rank, in [0, group_size)
  int group_size = 1;                // --group_size
};

// WorkerServiceImpl answers the gateway for this rank. Thread-safe. It serves
// from the start of the process: until the model is loaded (Attach), Generate
// is UNAVAILABLE and GetStatus says not ready. Callers must pass `auth` (the
// internal token); every Generate request is checked with the gateway's rules
// (CheckWorkerRequest, services/common/request_rules.h) before it reaches the
// engine, so a malformed one fails alone.
class WorkerServiceImpl final : public worker::v1::Worker::CallbackService {
 public:
  // A rank whose engine step has run for longer than `step_stall` reports
  // not ready (--step_stall_seconds), so the gateway sends new requests to
  // other groups while its group is stuck (a rank stopped answering, a hung
  // device).
  explicit WorkerServiceImpl(const WorkerIdentity& identity,
                             InternalAuth auth = InternalAuth(),
                             absl::Duration step_stall = absl::Seconds(30));

  // Attach hands the loaded model's vocabulary size, engine and KV pool to
  // the service; called once. `engine` and `pool` are not owned and must
  // outlive the service. A rank other than its group's rank 0 has no engine
  // (null): it refuses Generate with FAILED_PRECONDITION. `pool` is the group's
  // (its block ids) on rank 0. `device` (may be empty) describes the rank's
  // device in GetStatus; it must be thread-safe.
  void Attach(std::string fingerprint_hex, int vocab_size, Engine* engine,
              const KvBlockPool* pool,
              std::function<DeviceReport()> device = nullptr);

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
  struct Loaded {
    std::string fingerprint_hex;
    int vocab_size = 0;
    Engine* engine = nullptr;
    const KvBlockPool* pool = nullptr;
    std::function<DeviceReport()> device;
  };

  const WorkerIdentity identity_;
  const InternalAuth auth_;
  const absl::Duration step_stall_;
  std::unique_ptr<const Loaded> loaded_storage_;  // Set once by Attach.
  std::atomic<const Loaded*> loaded_{nullptr};
  std::atomic<bool> ready_{false};
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_WORKER_WORKER_SERVICE_IMPL_H_
