// worker: one rank of a worker group that hosts the model and holds long
// sequences (proto/worker.proto).
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "services/common/grpc_server.h"
#include "services/common/metrics_server.h"
#include "services/common/net_address.h"
#include "services/common/server_main.h"
#include "services/worker/model_source.h"
#include "services/worker/worker_service_impl.h"

ABSL_FLAG(std::string, listen_address, "0.0.0.0:50061",
          "host:port of the gRPC endpoint.");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9461",
          "host:port of the Prometheus /metrics endpoint.");
ABSL_FLAG(std::string, model, "",
          "Hugging Face model folder (config.json + *.safetensors). Required.");
ABSL_FLAG(std::string, group_id, "group-0", "Id of this rank's worker group.");
ABSL_FLAG(int, rank, 0, "This worker's rank in its group, in [0, group_size).");
ABSL_FLAG(int, group_size, 1, "Ranks in the group.");
ABSL_FLAG(std::string, memory_store, "",
          "Comma-separated host:port list of memory_store shards; empty runs "
          "without offload.");
ABSL_FLAG(int, block_size, 256, "Tokens per KV block.");
ABSL_FLAG(int, grace_period_seconds, 10,
          "On SIGTERM/SIGINT, seconds calls in flight may take to finish.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

int main(int argc, char** argv) {
  constexpr char kProgram[] = "worker";
  absl::SetProgramUsageMessage(
      "One rank of a longctx worker group. Usage: worker --model=DIR "
      "[--flags]");
  absl::ParseCommandLine(argc, argv);
  absl::Status status =
      longctx::InitProcess(kProgram, absl::GetFlag(FLAGS_log_level));
  if (!status.ok()) return longctx::StartupError(kProgram, status);

  auto listen = longctx::ParseHostPort(absl::GetFlag(FLAGS_listen_address),
                                       "listen_address");
  if (!listen.ok()) return longctx::StartupError(kProgram, listen.status());
  auto metrics_address = longctx::ParseHostPort(
      absl::GetFlag(FLAGS_metrics_address), "metrics_address");
  if (!metrics_address.ok()) {
    return longctx::StartupError(kProgram, metrics_address.status());
  }
  auto stores = longctx::ParseHostPortList(absl::GetFlag(FLAGS_memory_store),
                                           "memory_store");
  if (!stores.ok()) return longctx::StartupError(kProgram, stores.status());
  longctx::WorkerIdentity identity;
  identity.group_id = absl::GetFlag(FLAGS_group_id);
  identity.rank = absl::GetFlag(FLAGS_rank);
  identity.group_size = absl::GetFlag(FLAGS_group_size);
  if (identity.group_size < 1 || identity.rank < 0 ||
      identity.rank >= identity.group_size) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError(absl::StrCat(
                      "--rank=", identity.rank, " must be in [0, --group_size=",
                      identity.group_size, ")")));
  }
  const int block_size = absl::GetFlag(FLAGS_block_size);
  if (block_size < 1 || block_size > 65536) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError(absl::StrCat(
                      "--block_size=", block_size, " must be in [1, 65536]")));
  }
  auto model = longctx::OpenModelSource(absl::GetFlag(FLAGS_model));
  if (!model.ok()) return longctx::StartupError(kProgram, model.status());

  auto metrics = longctx::MetricsServer::Start(*metrics_address, kProgram);
  if (!metrics.ok()) return longctx::StartupError(kProgram, metrics.status());

  longctx::WorkerServiceImpl service(identity, model->fingerprint_hex,
                                     block_size);
  longctx::GrpcServerOptions server_options;
  server_options.listen = *listen;
  auto server = longctx::GrpcServer::Start(server_options, {&service});
  if (!server.ok()) return longctx::StartupError(kProgram, server.status());
  service.SetReady(true);
  return longctx::ServeUntilSignal(
      kProgram, **server, **metrics,
      absl::Seconds(absl::GetFlag(FLAGS_grace_period_seconds)));
}
