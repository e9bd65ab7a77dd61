#include "model/model_backend.h"

#include <vector>

#include "gtest/gtest.h"
#include "model/testing/random_llama.h"

namespace longctx {
namespace {

TEST(ParseDeviceFlagTest, AcceptsCpuCudaAndCudaN) {
  EXPECT_EQ(*ParseDeviceFlag("cpu"), -1);
  EXPECT_EQ(*ParseDeviceFlag("cuda"), 0);
  EXPECT_EQ(*ParseDeviceFlag("cuda:3"), 3);
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:x", "CPU"}) {
    absl::StatusOr<int> device = ParseDeviceFlag(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(device.status())) << bad;
    if (!device.ok()) {
      EXPECT_NE(device.status().message().find("--device"), std::string::npos);
    }
  }
}

ModelSource Source(const testing::RandomLlama& m) {
  ModelSource source;
  source.dir = "(in memory)";
  source.architecture = "LlamaForCausalLM";
  source.shape = m.shape;
  source.weights = m.weights;
  return source;
}

TEST(LoadModelOnDeviceTest, CpuModelRunsOverItsPool) {
  const testing::RandomLlama m = testing::MakeRandomLlama(true, false, 3);
  DeviceOptions options;
  options.block_size = 16;
  options.kv_cache_bytes = size_t{4} << 20;
  options.kv_cache_prefault = false;
  auto loaded = LoadModelOnDevice(Source(m), options, nullptr);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_NE(loaded->cpu_model, nullptr);
  EXPECT_EQ(loaded->model->vocab_size(), m.shape.vocab_size);
  EXPECT_EQ(loaded->pool->layout().block_size, 16);
  EXPECT_TRUE(loaded->pool->host_accessible());
  const DeviceReport report = loaded->report();
  EXPECT_EQ(report.device, "cpu");
  EXPECT_EQ(report.kv_cache_bytes,
            int64_t{loaded->pool->capacity()} *
                static_cast<int64_t>(loaded->pool->layout().BlockBytes()));
  // One forward step over the pool.
  const std::vector<int32_t> tokens = testing::RandomTokens(20, 97, 1);
  std::vector<int> blocks = {*loaded->pool->Allocate(),
                             *loaded->pool->Allocate()};
  SeqSpan span;
  span.tokens = tokens;
  span.blocks = blocks;
  span.want_logits = true;
  std::vector<float> logits(m.shape.vocab_size);
  EXPECT_TRUE(
      loaded->model->Forward({span}, *loaded->pool, logits.data()).ok());
  EXPECT_TRUE(loaded->model->health().ok());
}

// Without a GPU (or a CUDA build) --device=cuda fails at start-up with a
// reason, rather than serving on the CPU.
TEST(LoadModelOnDeviceTest, CudaWithoutAGpuIsAFailedPrecondition) {
  const testing::RandomLlama m = testing::MakeRandomLlama(false, true, 3);
  DeviceOptions options;
  options.device = 0;
  options.kv_cache_bytes = size_t{4} << 20;
  auto loaded = LoadModelOnDevice(Source(m), options, nullptr);
  if (loaded.ok())
    GTEST_SKIP() << "this machine has a GPU: " << loaded->description;
  EXPECT_TRUE(absl::IsFailedPrecondition(loaded.status())) << loaded.status();
}

}  // namespace
}  // namespace longctx
