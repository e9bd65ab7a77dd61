// bench_restore: time to first token of a long prompt computed cold against
// restored from the memory store, and restore throughput against the raw
// RocksDB read throughput of the same blocks, all measured in one run.
//
//   bazel run -c opt //tools/bench_engine:bench_restore -- --threads=2
//   --tokens=16384
//
// The store is a real memory_store (RocksDB on disk under --dir, served over
// gRPC on a loopback port); the model is shape S with random weights.
// "Restored" starts from an empty KV pool (as after a worker restart): it reads
// every stored block through the store client, verifies it, and computes only
// the last block. Restores and raw reads alternate --runs times (each restore
// into a new, prefaulted pool, as a restarted worker's); medians are reported.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "engine/kv_offloader.h"
#include "kernels/threads.h"
#include "kvblock/block_keys.h"
#include "memory_store/block_store.h"
#include "memory_store/memory_store_service_impl.h"
#include "memory_store/store_client.h"
#include "services/common/grpc_server.h"
#include "tools/bench_engine/bench_models.h"

ABSL_FLAG(int, threads, 2, "Compute threads.");
ABSL_FLAG(int, tokens, 16384, "Prompt tokens.");
ABSL_FLAG(std::string, shape, "S", "Model shape: S or M.");
ABSL_FLAG(std::string, dir, "",
          "Folder for the store; default a new temp folder.");
ABSL_FLAG(int, prefill_chunk, 2048, "Prompt tokens per forward call.");
ABSL_FLAG(int, restore_streams_per_shard,
          longctx::KvOffloaderOptions().restore_streams_per_shard,
          "Blocks fetched at once from the store.");
ABSL_FLAG(int, runs, 3,
          "Restores (each into a new pool) and raw reads; medians reported.");

namespace longctx {
namespace {

double Since(absl::Time start) {
  return absl::ToDoubleSeconds(absl::Now() - start);
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
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
  auto store = BlockStore::Open({dir + "/db"});
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  prometheus::Registry registry;
  MemoryStoreServiceImpl service(store->get(), MemoryStoreServiceOptions(),
                                 registry);
  GrpcServerOptions server_options;
  server_options.listen = {"127.0.0.1", 0};
  auto server = GrpcServer::Start(server_options, {&service});
  auto client = StoreClient::Create({{"127.0.0.1", (*server)->port()}}, {});

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
  // Everything in table and blob files, as after the store restarts.
  if (absl::Status flushed = (*store)->Flush(); !flushed.ok()) {
    std::fprintf(stderr, "%s\n", flushed.ToString().c_str());
    return 1;
  }

  // Restored: an empty pool, the stored prefix read back, the rest computed;
  // then raw RocksDB reads of the same blocks (no gRPC, no block checksums):
  // as the store reads (RocksDB's CRC32C not checked) and with RocksDB's
  // default read options (CRC32C checked), so all see the same moment of the
  // machine. Medians over --runs.
  const int runs = std::max(1, absl::GetFlag(FLAGS_runs));
  std::vector<double> restores, rests, raws, crc_raws;
  int restored = 0;
  double bytes = 0;
  for (int run = 0; run < runs; ++run) {
    auto pool = *KvBlockPool::Create(layout, layout.BlockBytes() * num_blocks,
                                     /*prefault=*/true);
    std::vector<int> blocks;
    for (int i = 0; i < num_blocks; ++i) blocks.push_back(*pool->Allocate());
    KvOffloaderOptions restore_options;
    restore_options.restore_streams_per_shard =
        absl::GetFlag(FLAGS_restore_streams_per_shard);
    KvOffloader offloader(client->get(), pool.get(), fingerprint,
                          restore_options, nullptr);
    absl::Time start = absl::Now();
    restored =
        offloader.Restore(absl::MakeConstSpan(keys).subspan(0, restorable),
                          absl::MakeConstSpan(blocks).subspan(0, restorable));
    restores.push_back(Since(start));
    rests.push_back(Prefill(**model, *pool, tokens,
                            std::min(restored * block, n - 1), blocks));

    for (bool verify : {false, true}) {
      start = absl::Now();
      std::string value;
      bytes = 0;
      for (int i = 0; i < restorable; ++i) {
        const int parts = *(*store)->NumParts(keys[i].key);
        for (int p = 0; p < parts; ++p) {
          (void)(*store)->GetPart(keys[i].key, p, &value, verify);
          bytes += value.size();
        }
      }
      (verify ? crc_raws : raws).push_back(Since(start));
    }
  }
  const double restore = Median(restores);
  const double rest = Median(rests);
  const double raw = Median(raws);
  const double crc_raw = Median(crc_raws);

  const double restored_ttft = restore + rest;
  std::printf("# memory store restore, shape %s, %d threads\n\n",
              absl::GetFlag(FLAGS_shape).c_str(), absl::GetFlag(FLAGS_threads));
  std::printf("| measure | value |\n|---|---|\n");
  std::printf("| prompt | %d tokens, %d blocks of %d stored (%.1f MiB) |\n", n,
              restored, block, bytes / (1 << 20));
  std::printf("| time to first token, cold (compute all) | %.3f s |\n", cold);
  std::printf(
      "| time to first token, restored (read %d blocks + compute %d tokens) "
      "| %.3f s (restore %.3f s + compute %.3f s) |\n",
      restored, n - std::min(restored * block, n - 1), restored_ttft, restore,
      rest);
  std::printf("| speedup of restored over cold | %.1fx (target >= 20x) |\n",
              cold / restored_ttft);
  std::printf(
      "| restore throughput (store client, gRPC, verified) | %.0f MiB/s |\n",
      bytes / restore / (1 << 20));
  std::printf(
      "| raw RocksDB read, same blocks, as the store reads (no RocksDB CRC) "
      "| %.0f MiB/s |\n",
      bytes / raw / (1 << 20));
  std::printf(
      "| raw RocksDB read, same blocks, RocksDB's default (CRC32C checked) "
      "| %.0f MiB/s |\n",
      bytes / crc_raw / (1 << 20));
  std::printf(
      "| restore / raw RocksDB as the store reads | %.0f%% (target >= 50%%) "
      "|\n",
      100 * raw / restore);
  std::printf(
      "| restore / raw RocksDB with CRC32C checked | %.0f%% (target >= 50%%) "
      "|\n",
      100 * crc_raw / restore);
  std::printf(
      "\nMedians of %d runs; each run: restore / raw / raw with CRC seconds:",
      runs);
  for (int run = 0; run < runs; ++run) {
    std::printf(" %.3f/%.3f/%.3f", restores[run], raws[run], crc_raws[run]);
  }
  std::printf("\n");
  client->reset();
  server->reset();
  store->reset();
  if (temporary) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return longctx::Run();
}
