// WorkerServer: one worker rank as a server, the object a worker's main()
// builds from its flags (TensorFlow Serving's Server::Options +
// BuildAndStart): the gRPC service, /metrics, the model on its device with its
// KV pool, the engine, offload and restore through the memory store, and the
// rank's group.
//
// Health and readiness: the gRPC server answers from the start, NOT_SERVING
// (Generate UNAVAILABLE) while the model loads and while the rank's group is
// incomplete, SERVING once both are done, and NOT_SERVING again when the
// group loses a rank or the model breaks for good (a GPU fault).
#ifndef LONGCTX_SERVICES_WORKER_WORKER_SERVER_H_
#define LONGCTX_SERVICES_WORKER_WORKER_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/engine_metrics.h"
#include "engine/kv_offloader.h"
#include "memory_store/store_client.h"
#include "model/model_backend.h"
#include "parallel/worker_group.h"
#include "services/common/grpc_server.h"
#include "services/common/internal_auth.h"
#include "services/common/metrics_server.h"
#include "services/common/net_address.h"
#include "services/common/tls.h"
#include "services/worker/worker_service_impl.h"

namespace longctx {

// WorkerServerOptions is everything a rank is configured with (each field
// comes from the worker flag of the same name; docs in worker_main.cc and the
// README).
struct WorkerServerOptions {
  // The gRPC listener, TLS and message limits (--listen_address, --tls_*,
  // --health_address, --max_message_bytes).
  GrpcServerOptions grpc;
  // Where /metrics is served (--metrics_address).
  HostPort metrics_address;
  // The rank's group and place in it (--group_id, --rank, --group_size).
  WorkerIdentity identity;
  // The Hugging Face model folder (--model).
  std::string model_dir;
  // The device, precision and KV cache (--device, --compute_precision,
  // --kv_cache_bytes, ...).
  DeviceOptions device;
  // Scheduling (--max_batch, --max_queue, ...). Its metrics, offloader,
  // fingerprint and on_model_failure are set by the server.
  EngineOptions engine;
  // memory_store shards (--memory_store); none runs without offload.
  std::vector<HostPort> memory_stores;
  // Calls to the store (--store_timeout_ms); its channel_security is
  // internal_security below.
  StoreClientOptions store;
  // Offload queue and restore streams (--offload_queue_blocks, ...).
  KvOffloaderOptions offload;
  // How this rank calls the store and the rendezvous (--internal_tls_*,
  // --internal_token_file), and who may call it (--internal_token_file).
  ChannelSecurity internal_security;
  InternalAuth internal_auth;
  // A step running longer than this reports the rank not ready
  // (--step_stall_seconds).
  absl::Duration step_stall = absl::Seconds(30);
  // Groups of more than one rank: the rendezvous (the gateway's address),
  // the address peers reach this rank at, and the group's timeouts.
  std::string rendezvous_address;
  std::string gloo_hostname = "127.0.0.1";
  absl::Duration group_form_timeout = absl::Seconds(20);
  absl::Duration group_op_timeout = absl::Seconds(60);
};

// WorkerServer runs until destroyed (the destructor stops the engine, the
// group and the offloader, then the servers).
class WorkerServer {
 public:
  // Start serves gRPC and /metrics at once, then loads the model, and returns
  // once the rank is attached (SERVING, or waiting for its group). Errors:
  // FAILED_PRECONDITION for a port in use or a device that cannot be used,
  // the model folder's and the pool's errors (INVALID_ARGUMENT, NOT_FOUND,
  // RESOURCE_EXHAUSTED), UNIMPLEMENTED for a GPU rank in a group.
  static absl::StatusOr<std::unique_ptr<WorkerServer>> Start(
      WorkerServerOptions options);
  ~WorkerServer();

  GrpcServer& grpc_server() { return *grpc_; }
  MetricsServer& metrics_server() { return *metrics_; }

 private:
  WorkerServer() = default;
  // Applies the rank's readiness to health and the service.
  void ReportReadyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ready_mu_);

  WorkerServerOptions options_;
  // Declared in the order they are built; destroyed the other way round.
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<GrpcServer> grpc_;
  ModelOnDevice loaded_;
  std::unique_ptr<EngineMetrics> engine_metrics_;
  std::unique_ptr<StoreClient> store_client_;
  std::unique_ptr<KvOffloader> offloader_;
  std::unique_ptr<WorkerGroup> group_;
  std::unique_ptr<Engine> engine_;

  absl::Mutex ready_mu_;  // Orders the readiness reports.
  bool attached_ ABSL_GUARDED_BY(ready_mu_) = false;
  bool group_ready_ ABSL_GUARDED_BY(ready_mu_) = false;
  bool model_failed_ ABSL_GUARDED_BY(ready_mu_) = false;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_WORKER_WORKER_SERVER_H_
