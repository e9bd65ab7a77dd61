// memory_store: serves KV blocks from RocksDB on local disk
// (proto/memory_store.proto).
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "memory_store/block_store.h"
#include "memory_store/local_read_server.h"
#include "memory_store/memory_store_service_impl.h"
#include "prometheus/counter.h"
#include "services/common/grpc_server.h"
#include "services/common/internal_auth.h"
#include "services/common/internal_token_flags.h"
#include "services/common/logging.h"
#include "services/common/metrics_server.h"
#include "services/common/net_address.h"
#include "services/common/server_main.h"
#include "services/common/server_tls_flags.h"

ABSL_FLAG(std::string, listen_address, "127.0.0.1:50071",
          "host:port of the gRPC endpoint. Loopback by default: an internal "
          "service; listen on a private address when workers run elsewhere, "
          "with --internal_token_file or --tls_client_ca.");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9471",
          "host:port of the Prometheus /metrics endpoint.");
ABSL_FLAG(std::string, data_dir, "/tmp/longctx/memory_store",
          "Folder of the RocksDB database; created if missing.");
ABSL_FLAG(
    bool, sync_writes, true,
    "Acknowledge a Put only once the write-ahead log holding it is on disk "
    "(fsync; survives power loss, not only a killed process). Concurrent "
    "Puts share each fsync (group commit). false: acknowledged Puts survive "
    "a killed process but not a power loss.");
ABSL_FLAG(
    int64_t, max_bytes, 0,
    "Most bytes of KV blocks kept; least recently used blocks are evicted "
    "beyond it. 0 means no limit.");
ABSL_FLAG(int64_t, max_block_bytes, 512ll << 20,
          "Largest block a Put may store, in bytes.");
ABSL_FLAG(bool, verify_rocksdb_checksums, false,
          "Have RocksDB verify its CRC32C of every part read (blocks carry "
          "their own checksums, verified by every reader).");
ABSL_FLAG(std::string, local_socket, "",
          "Path of a Unix socket serving whole-block reads to workers on this "
          "machine running as this user (mode 0600, peers' user checked): "
          "restores several times faster than over gRPC. Workers name it in "
          "--memory_store_local_sockets. Empty: none.");
ABSL_FLAG(int, local_socket_max_connections, 16,
          "Most --local_socket connections served at once; more are closed "
          "(their reads go over gRPC).");
ABSL_FLAG(int, grace_period_seconds, 10,
          "On SIGTERM/SIGINT, seconds calls in flight may take to finish.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

int main(int argc, char** argv) {
  constexpr char kProgram[] = "memory_store";
  absl::SetProgramUsageMessage(
      "Serves longctx KV blocks from RocksDB. Usage: memory_store [--flags]");
  absl::ParseCommandLine(argc, argv);
  absl::Status status =
      longctx::InitProcess(kProgram, absl::GetFlag(FLAGS_log_level));
  if (!status.ok()) return longctx::StartupError(kProgram, status);

  auto addresses =
      longctx::ParseServerAddresses(absl::GetFlag(FLAGS_listen_address),
                                    absl::GetFlag(FLAGS_metrics_address));
  if (!addresses.ok()) {
    return longctx::StartupError(kProgram, addresses.status());
  }
  longctx::GrpcServerOptions server_options;
  server_options.listen = addresses->listen;
  auto tls = longctx::ApplyServerTlsFlags(longctx::ServerTlsOptions(),
                                          &server_options);
  if (!tls.ok()) return longctx::StartupError(kProgram, tls.status());
  if (absl::GetFlag(FLAGS_max_block_bytes) <= 0) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError("--max_block_bytes must be > 0"));
  }
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  status = longctx::EnsureWritableDir(data_dir, "data_dir");
  if (!status.ok()) return longctx::StartupError(kProgram, status);

  longctx::BlockStoreOptions store_options;
  store_options.path = data_dir;
  store_options.sync_writes = absl::GetFlag(FLAGS_sync_writes);
  store_options.verify_read_checksums =
      absl::GetFlag(FLAGS_verify_rocksdb_checksums);
  if (absl::GetFlag(FLAGS_max_bytes) < 0) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError("--max_bytes must be >= 0"));
  }
  store_options.max_bytes =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_max_bytes));
  auto store = longctx::BlockStore::Open(store_options);
  if (!store.ok()) return longctx::StartupError(kProgram, store.status());

  auto metrics = longctx::MetricsServer::Start(addresses->metrics, kProgram);
  if (!metrics.ok()) return longctx::StartupError(kProgram, metrics.status());

  longctx::MemoryStoreServiceOptions service_options;
  service_options.max_block_bytes = absl::GetFlag(FLAGS_max_block_bytes);
  auto token = longctx::InternalTokenFromFlags();
  if (!token.ok()) return longctx::StartupError(kProgram, token.status());
  service_options.auth = longctx::InternalAuth(*std::move(token));
  longctx::MemoryStoreServiceImpl service(store->get(), service_options,
                                          (*metrics)->registry());

  auto server = longctx::GrpcServer::Start(server_options, {&service});
  if (!server.ok()) return longctx::StartupError(kProgram, server.status());
  std::unique_ptr<longctx::LocalReadServer> local;
  if (!absl::GetFlag(FLAGS_local_socket).empty()) {
    longctx::LocalReadOptions local_options;
    local_options.path = absl::GetFlag(FLAGS_local_socket);
    local_options.max_connections =
        absl::GetFlag(FLAGS_local_socket_max_connections);
    const longctx::MemoryStoreServiceImpl::Counters& c = service.counters();
    prometheus::Counter& local_reads =
        prometheus::BuildCounter()
            .Name("longctx_store_local_blocks_read_total")
            .Help(
                "KV blocks read over --local_socket (also counted in "
                "longctx_store_blocks_read_total).")
            .Register((*metrics)->registry())
            .Add({});
    auto started = longctx::LocalReadServer::Start(
        store->get(), local_options,
        {c.blocks_read, c.bytes_read, c.read_misses, &local_reads});
    if (!started.ok()) return longctx::StartupError(kProgram, started.status());
    local = *std::move(started);
    longctx::Log(longctx::LogLevel::kInfo, "serving local reads on %s",
                 local->path());
  }
  return longctx::ServeUntilSignal(
      kProgram, **server, **metrics,
      absl::Seconds(absl::GetFlag(FLAGS_grace_period_seconds)));
}
