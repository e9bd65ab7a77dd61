// bench_store_writes: memory_store write throughput with and without durable
// acknowledgement (BlockStore's sync_writes, group commit of the write-ahead
// log), at several numbers of concurrent writers. Each measurement writes
// fresh blocks (distinct keys) into a fresh store under --dir; prints a
// Markdown table for docs/BENCHMARKS.md.
//
//   bazel run -c opt //tools/bench_store:bench_store_writes -- --dir=/var/tmp/x
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "memory_store/block_store.h"

ABSL_FLAG(std::string, dir, "/var/tmp/longctx-bench-store",
          "Folder for the stores (on the disk to measure; removed after).");
ABSL_FLAG(int, blocks, 256, "Blocks written per measurement.");
ABSL_FLAG(int, block_kib, 1024,
          "Bytes of a block, in KiB (one header part "
          "of 256 bytes plus 8 equal parts).");
ABSL_FLAG(std::string, writers, "1,4,16", "Concurrent writers to measure.");

namespace {

struct Result {
  double seconds = 0;
  int64_t syncs = 0;
};

Result Measure(const std::string& path, bool sync, int writers, int blocks,
               size_t block_bytes) {
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
  longctx::BlockStoreOptions options;
  options.path = path;
  options.sync_writes = sync;
  auto store = longctx::BlockStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  const size_t part = (block_bytes - 256) / 8;
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      std::vector<std::string> parts(9);
      for (int i; (i = next.fetch_add(1)) < blocks;) {
        std::string key(longctx::BlockStore::kKeySize, '\0');
        std::snprintf(key.data(), key.size(), "block-%08d", i);
        parts[0] = std::string(256, static_cast<char>(i));
        for (int p = 1; p < 9; ++p) {
          parts[p] = std::string(part, static_cast<char>(i * 9 + p + w));
        }
        if (!(*store)->Put(key, parts).ok()) failed = true;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  Result result;
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  result.syncs = (*store)->Stats().wal_syncs;
  if (failed) {
    std::fprintf(stderr, "a Put failed\n");
    std::exit(1);
  }
  store->reset();
  std::filesystem::remove_all(path);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  const int blocks = absl::GetFlag(FLAGS_blocks);
  const size_t block_bytes = size_t{1024} * absl::GetFlag(FLAGS_block_kib);
  std::printf("**memory_store writes, %d blocks of %zu KiB, into %s**\n\n",
              blocks, block_bytes / 1024, dir.c_str());
  std::printf(
      "| writers | not durable (sync_writes=false) | durable, group commit "
      "(sync_writes=true) | durable / not | fsyncs per block |\n"
      "|---|---|---|---|---|\n");
  for (absl::string_view w :
       absl::StrSplit(absl::GetFlag(FLAGS_writers), ',')) {
    const int writers = std::stoi(std::string(w));
    const std::string path = absl::StrCat(dir, "/store-", writers);
    // Alternate the two, twice, and keep each one's best.
    Result fast{1e30, 0}, durable{1e30, 0};
    for (int round = 0; round < 2; ++round) {
      Result f = Measure(path, false, writers, blocks, block_bytes);
      Result d = Measure(path, true, writers, blocks, block_bytes);
      if (f.seconds < fast.seconds) fast = f;
      if (d.seconds < durable.seconds) durable = d;
    }
    const double mib = static_cast<double>(blocks) * block_bytes / (1 << 20);
    std::printf(
        "| %d | %.0f blocks/s (%.0f MiB/s) | %.0f blocks/s (%.0f "
        "MiB/s) | %.0f%% | %.2f |\n",
        writers, blocks / fast.seconds, mib / fast.seconds,
        blocks / durable.seconds, mib / durable.seconds,
        100.0 * fast.seconds / durable.seconds,
        static_cast<double>(durable.syncs) / blocks);
  }
  return 0;
}
