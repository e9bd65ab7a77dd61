// bench_restore: time to first token of a long prompt computed cold against
// restored from the memory store, and restore throughput against the raw
// RocksDB read throughput of the same blocks, all measured in one run.
//
//   bazel run -c opt //tools/bench_engine:bench_restore -- --threads=2
//   --tokens=16384
//
// The store is the real memory_store binary in its own process (RocksDB on
// disk under --dir, served over gRPC on a loopback port), as a worker meets it;
// the model is shape S with random weights. "Restored" starts from an empty KV
// pool (as after a worker restart): it reads every stored block through the
// store client, verifies it, and computes only the last block. Each run
// restores from a freshly started store (into a new, prefaulted pool, as a
// restarted worker's), then stops the store and reads the same blocks straight
// from its RocksDB in this process; medians over --runs are reported.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/kv_offloader.h"
#include "kernels/threads.h"
#include "kvblock/block_keys.h"
#include "memory_store/block_store.h"
#include "memory_store/store_client.h"
#include "tests/testing/process.h"
#include "tools/bench_engine/bench_models.h"

ABSL_FLAG(int, threads, 2, "Compute threads.");
ABSL_FLAG(int, tokens, 16384, "Prompt tokens.");
ABSL_FLAG(std::string, shape, "S", "Model shape: S or M.");
ABSL_FLAG(std::string, dir, "",
          "Folder for the store; default a new temp folder.");
ABSL_FLAG(int, prefill_chunk, 2048, "Prompt tokens per forward call.");
ABSL_FLAG(int, restore_streams_per_shard,
          longctx::KvOffloaderOptions().restore_streams_per_shard,
          "Blocks fetched at once from the store over gRPC.");
ABSL_FLAG(int, restore_streams_per_local_shard,
          longctx::KvOffloaderOptions().restore_streams_per_local_shard,
          "Blocks fetched at once from the store over its local socket.");
ABSL_FLAG(int, runs, 3,
          "Restores (each into a new pool) and raw reads; medians reported.");
ABSL_FLAG(std::string, memory_store_binary, "memory_store/memory_store",
          "The memory_store binary to run; a relative path is looked up "
          "from the current folder (bazel run's), then in this binary's "
          "runfiles.");

namespace longctx {
namespace {

double Since(absl::Time start) {
  return absl::ToDoubleSeconds(absl::Now() - start);
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Seconds to move `bytes` over a bare connection (1 MiB writes, 1 MiB reads,
// no RocksDB, no protocol) between two threads: TCP on the loopback, the
// floor of any store protocol over TCP on this machine, or a Unix socket
// pair, the local socket's; 0 if a socket call fails.
double LoopbackSeconds(size_t bytes, bool unix_socket) {
  int ends[2] = {-1, -1};
  if (unix_socket) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, ends) != 0) return 0;
  } else {
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (listener < 0 ||
        bind(listener, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        listen(listener, 1) != 0 ||
        getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) !=
            0) {
      if (listener >= 0) close(listener);
      return 0;
    }
    ends[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (ends[0] < 0 || connect(ends[0], reinterpret_cast<sockaddr*>(&address),
                               sizeof(address)) != 0) {
      if (ends[0] >= 0) close(ends[0]);
      close(listener);
      return 0;
    }
    ends[1] = accept(listener, nullptr, nullptr);
    close(listener);
    if (ends[1] < 0) {
      close(ends[0]);
      return 0;
    }
  }
  constexpr size_t kChunk = 1 << 20;
  const absl::Time start = absl::Now();
  std::thread sender([&] {
    std::vector<char> chunk(kChunk, 'k');
    for (size_t sent = 0; sent < bytes;) {
      const ssize_t n =
          write(ends[0], chunk.data(), std::min(kChunk, bytes - sent));
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    close(ends[0]);
  });
  std::vector<char> chunk(kChunk);
  size_t received = 0;
  while (received < bytes) {
    const ssize_t n = read(ends[1], chunk.data(), kChunk);
    if (n <= 0) break;
    received += static_cast<size_t>(n);
  }
  const double seconds = Since(start);
  sender.join();
  close(ends[1]);
  return received == bytes ? seconds : 0;
}

// StartStore runs the memory_store binary serving `data_dir` on `port` and
// on the local socket `socket`, its output appended to `log`, and waits until
// it serves.
absl::StatusOr<testing::Process> StartStore(const std::string& data_dir,
                                            int port, const std::string& socket,
                                            const std::string& log) {
  absl::StatusOr<testing::Process> store = testing::Process::Start(
      {absl::GetFlag(FLAGS_memory_store_binary),
       absl::StrCat("--listen_address=127.0.0.1:", port),
       "--metrics_address=127.0.0.1:0", "--data_dir=" + data_dir,
       "--local_socket=" + socket, "--grace_period_seconds=1"},
      log);
  if (!store.ok()) return store.status();
  absl::Status serving = testing::WaitForServing(
      absl::StrCat("127.0.0.1:", port), absl::Seconds(30));
  if (!serving.ok()) return serving;
  return store;
}

// StopStore stops the store gracefully (SIGTERM) and waits for it to exit.
void StopStore(std::optional<testing::Process>& store) {
  if (!store.has_value()) return;
  store->Signal(SIGTERM);
  (void)store->Wait(absl::Seconds(30));
  store.reset();
}

// Prefills tokens [from, n) into `blocks` and returns the seconds it took.
double Prefill(LlamaModel& model, KvBlockPool& pool,
               const std::vector<int32_t>& tokens, int from,
               const std::vector<int>& blocks) {
  std::vector<float> logits(model.vocab_size());
  const int n = static_cast<int>(tokens.size());
  const int chunk = absl::GetFlag(FLAGS_prefill_chunk);
  absl::Time start = absl::Now();
  for (int pos = from; pos < n; pos += chunk) {
    const int len = std::min(chunk, n - pos);
    SeqSpan span{absl::MakeConstSpan(tokens).subspan(pos, len), pos, blocks,
                 pos + len == n};
    absl::Status status = model.Forward({span}, pool, logits.data());
    if (!status.ok())
      std::fprintf(stderr, "forward: %s\n", status.ToString().c_str());
  }
  return Since(start);
}

int Run() {
  kernels::SetNumThreads(absl::GetFlag(FLAGS_threads));
  std::string dir = absl::GetFlag(FLAGS_dir);
  const bool temporary = dir.empty();
  if (temporary) {
    char pattern[] = "/tmp/bench_restore_XXXXXX";
    dir = mkdtemp(pattern);
  }
  const std::string db = dir + "/db";
  const std::string log = dir + "/memory_store.log";
  const std::string socket = dir + "/store.sock";
  const int port = testing::FreePort();
  std::optional<testing::Process> store;
  if (auto started = StartStore(db, port, socket, log); started.ok()) {
    store = *std::move(started);
  } else {
    std::fprintf(stderr, "memory_store did not start (%s); see %s\n",
                 started.status().ToString().c_str(), log.c_str());
    return 1;
  }
  auto client = StoreClient::Create({{"127.0.0.1", port}}, {});

  auto weights = MakeModel(absl::GetFlag(FLAGS_shape), kernels::DType::kF32);
  LlamaModelOptions model_options;
  model_options.threads = absl::GetFlag(FLAGS_threads);
  auto model =
      LlamaModel::Create(weights->shape, weights->weights, model_options);
  const int block = 256;
  const int n = absl::GetFlag(FLAGS_tokens);
  const int num_blocks = (n + block - 1) / block;
  const KvLayout layout = (*model)->KvLayoutFor(block, KvDtype::kF16);
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = (i * 7919 + 13) % 32000;
  const Hash128 fingerprint{42, 7};
  const std::vector<BlockKey> keys =
      ChainedBlockKeys(BlockKeySeed(fingerprint, ""), tokens, block);
  const int restorable = static_cast<int>(keys.size());

  // Cold: the whole prompt computed, then its blocks offloaded.
  double cold = 0;
  {
    auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * num_blocks,
                                     /*prefault=*/true);
    std::vector<int> blocks;
    for (int i = 0; i < num_blocks; ++i) blocks.push_back(*pool->Allocate());
    cold = Prefill(**model, *pool, tokens, 0, blocks);
    KvOffloader offloader(client->get(), pool.get(), fingerprint, {}, nullptr);
    for (int i = 0; i < restorable; ++i)
      offloader.Offload(keys[i], blocks[i], block);
    offloader.WaitIdle();
  }
  // The store restarts with everything in table and blob files.
  StopStore(store);
  {
    auto flushed = BlockStore::Open({db});
    absl::Status status = flushed.ok() ? (*flushed)->Flush() : flushed.status();
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", status.ToString().c_str());
      return 1;
    }
  }

  // Restored: an empty pool, the stored prefix read back, the rest computed;
  // then raw RocksDB reads of the same blocks (no gRPC, no block checksums):
  // as the store reads (RocksDB's CRC32C not checked) and with RocksDB's
  // default read options (CRC32C checked), so all see the same moment of the
  // machine. Medians over --runs.
  const int runs = std::max(1, absl::GetFlag(FLAGS_runs));
  std::vector<double> restores, local_restores, rests, raws, crc_raws,
      loopbacks, unix_loopbacks;
  int restored = 0, local_restored = 0;
  double bytes = 0;
  for (int run = 0; run < runs; ++run) {
    if (auto started = StartStore(db, port, socket, log); started.ok()) {
      store = *std::move(started);
    } else {
      std::fprintf(stderr, "memory_store did not restart (%s); see %s\n",
                   started.status().ToString().c_str(), log.c_str());
      return 1;
    }
    // Each way of reading restores the prompt into a new pool with a new
    // client, as a restarted worker's (its first call connects; a client
    // from before the store's restart would first wait out its reconnect
    // backoff); which goes first alternates between runs.
    auto restore_once = [&](bool local) {
      StoreClientOptions client_options;
      if (local) client_options.local_sockets = {socket};
      client = StoreClient::Create({{"127.0.0.1", port}}, client_options);
      auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * num_blocks,
                                       /*prefault=*/true);
      std::vector<int> blocks;
      for (int i = 0; i < num_blocks; ++i) blocks.push_back(*pool->Allocate());
      KvOffloaderOptions restore_options;
      restore_options.restore_streams_per_shard =
          absl::GetFlag(FLAGS_restore_streams_per_shard);
      restore_options.restore_streams_per_local_shard =
          absl::GetFlag(FLAGS_restore_streams_per_local_shard);
      KvOffloader offloader(client->get(), pool.get(), fingerprint,
                            restore_options, nullptr);
      absl::Time start = absl::Now();
      restored =
          offloader.Restore(absl::MakeConstSpan(keys).subspan(0, restorable),
                            absl::MakeConstSpan(blocks).subspan(0, restorable));
      (local ? local_restores : restores).push_back(Since(start));
      if (local) {
        local_restored = restored;
        rests.push_back(Prefill(**model, *pool, tokens,
                                std::min(restored * block, n - 1), blocks));
      }
    };
    restore_once(run % 2 == 0);
    restore_once(run % 2 != 0);

    // The store stops; its RocksDB is read here, as the store reads it.
    StopStore(store);
    auto raw_store = BlockStore::Open({db});
    if (!raw_store.ok()) {
      std::fprintf(stderr, "%s\n", raw_store.status().ToString().c_str());
      return 1;
    }
    for (bool verify : {false, true}) {
      const absl::Time start = absl::Now();
      std::string value;
      bytes = 0;
      for (int i = 0; i < restorable; ++i) {
        const int parts = *(*raw_store)->NumParts(keys[i].key);
        for (int p = 0; p < parts; ++p) {
          (void)(*raw_store)->GetPart(keys[i].key, p, &value, verify);
          bytes += value.size();
        }
      }
      (verify ? crc_raws : raws).push_back(Since(start));
    }
    loopbacks.push_back(LoopbackSeconds(static_cast<size_t>(bytes), false));
    unix_loopbacks.push_back(LoopbackSeconds(static_cast<size_t>(bytes), true));
  }
  const double restore = Median(restores);
  const double local_restore = Median(local_restores);
  const double unix_loopback = Median(unix_loopbacks);
  const double rest = Median(rests);
  const double raw = Median(raws);
  const double crc_raw = Median(crc_raws);
  const double loopback = Median(loopbacks);

  const double restored_ttft = local_restore + rest;
  auto mib_s = [&](double seconds) { return bytes / seconds / (1 << 20); };
  std::printf("# memory store restore, shape %s, %d threads\n\n",
              absl::GetFlag(FLAGS_shape).c_str(), absl::GetFlag(FLAGS_threads));
  std::printf("| measure | value |\n|---|---|\n");
  std::printf("| prompt | %d tokens, %d blocks of %d stored (%.1f MiB) |\n", n,
              local_restored, block, bytes / (1 << 20));
  std::printf("| time to first token, cold (compute all) | %.3f s |\n", cold);
  std::printf(
      "| time to first token, restored over the local socket (read %d blocks "
      "+ compute %d tokens) | %.3f s (restore %.3f s + compute %.3f s) |\n",
      local_restored, n - std::min(local_restored * block, n - 1),
      restored_ttft, local_restore, rest);
  std::printf("| speedup of restored over cold | %.1fx (target >= 20x) |\n",
              cold / restored_ttft);
  std::printf(
      "| restore throughput, local socket (whole blocks, verified) | %.0f "
      "MiB/s |\n",
      mib_s(local_restore));
  std::printf(
      "| restore throughput, gRPC (%d blocks, verified) | %.0f MiB/s |\n",
      restored, mib_s(restore));
  std::printf(
      "| raw RocksDB read, same blocks, as the store reads (no RocksDB CRC) "
      "| %.0f MiB/s |\n",
      mib_s(raw));
  std::printf(
      "| raw RocksDB read, same blocks, RocksDB's default (CRC32C checked) "
      "| %.0f MiB/s |\n",
      mib_s(crc_raw));
  std::printf(
      "| bare TCP loopback, same bytes (no RocksDB, no protocol) | %.0f MiB/s "
      "|\n",
      mib_s(loopback));
  std::printf(
      "| bare Unix socket, same bytes (no RocksDB, no protocol) | %.0f MiB/s "
      "|\n",
      mib_s(unix_loopback));
  std::printf(
      "| restore over the local socket / raw RocksDB as the store reads | "
      "%.0f%% (target >= 50%%) |\n",
      100 * raw / local_restore);
  std::printf(
      "| restore over gRPC / raw RocksDB as the store reads | %.0f%% |\n",
      100 * raw / restore);
  std::printf("| restore over the local socket / bare Unix socket | %.0f%% |\n",
              100 * unix_loopback / local_restore);
  std::printf("| restore over gRPC / bare TCP loopback | %.0f%% |\n",
              100 * loopback / restore);
  std::printf(
      "| restore over the local socket / raw RocksDB with CRC32C checked | "
      "%.0f%% |\n",
      100 * crc_raw / local_restore);
  std::printf(
      "\nMedians of %d runs; each run: restore over the local socket / over "
      "gRPC / raw / raw with CRC / TCP loopback / Unix socket seconds:",
      runs);
  for (int run = 0; run < runs; ++run) {
    std::printf(" %.3f/%.3f/%.3f/%.3f/%.3f/%.3f", local_restores[run],
                restores[run], raws[run], crc_raws[run], loopbacks[run],
                unix_loopbacks[run]);
  }
  std::printf("\n");
  client->reset();
  if (temporary) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // Run straight from bazel-bin, the store binary is in the runfiles.
  const std::string binary = absl::GetFlag(FLAGS_memory_store_binary);
  const std::string in_runfiles =
      std::string(argv[0]) + ".runfiles/longctx/" + binary;
  if (!binary.empty() && binary[0] != '/' && !std::filesystem::exists(binary) &&
      std::filesystem::exists(in_runfiles)) {
    absl::SetFlag(&FLAGS_memory_store_binary, in_runfiles);
  }
  return longctx::Run();
}
