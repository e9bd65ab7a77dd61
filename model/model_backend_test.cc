#include "model/model_backend.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/gemm.h"
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

// --weight_dtype=int8 reaches the CPU model: its logits move a little (the
// quantization) from those of the same weights held as they are.
TEST(LoadModelOnDeviceTest, Int8WeightsReachTheCpuModel) {
  const testing::RandomLlama m = testing::MakeRandomLlama(false, false, 5);
  const std::vector<int32_t> tokens = testing::RandomTokens(12, 97, 2);
  std::vector<std::vector<float>> logits;
  for (kernels::WeightDtype dtype :
       {kernels::WeightDtype::kAuto, kernels::WeightDtype::kInt8}) {
    DeviceOptions options;
    options.weight_dtype = dtype;
    options.kv_cache_bytes = size_t{4} << 20;
    options.kv_cache_prefault = false;
    ModelSource source = Source(m);
    source.fingerprint = Hash128{11, 12};
    auto loaded = LoadModelOnDevice(source, options, nullptr);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    // int8 weights serve another model: their KV blocks are keyed apart.
    EXPECT_EQ(loaded->fingerprint,
              ServedFingerprint(source.fingerprint, dtype));
    EXPECT_EQ(loaded->fingerprint == source.fingerprint,
              dtype == kernels::WeightDtype::kAuto);
    std::vector<int> blocks = {*loaded->pool->Allocate()};
    SeqSpan span;
    span.tokens = tokens;
    span.blocks = blocks;
    span.want_logits = true;
    logits.emplace_back(m.shape.vocab_size);
    ASSERT_TRUE(
        loaded->model->Forward({span}, *loaded->pool, logits.back().data())
            .ok());
  }
  double scale = 0, diff = 0;
  for (size_t i = 0; i < logits[0].size(); ++i) {
    scale = std::max(scale, std::fabs(double{logits[0][i]}));
    diff = std::max(diff, std::fabs(double{logits[0][i]} - logits[1][i]));
  }
  EXPECT_GT(diff, 0.0);
  EXPECT_LT(diff, 0.1 * scale);
}

TEST(ServedFingerprintTest, OnlyQuantizedWeightsMakeAnotherModel) {
  const Hash128 a{1, 2}, b{1, 3};
  EXPECT_EQ(ServedFingerprint(a, kernels::WeightDtype::kAuto), a);
  const Hash128 a8 = ServedFingerprint(a, kernels::WeightDtype::kInt8);
  EXPECT_NE(a8, a);
  EXPECT_EQ(a8, ServedFingerprint(a, kernels::WeightDtype::kInt8));
  EXPECT_NE(a8, ServedFingerprint(b, kernels::WeightDtype::kInt8));
  EXPECT_NE(a8, b);
}

TEST(LoadModelOnDeviceTest, Int8WeightsOnAGpuAreUnimplemented) {
  const testing::RandomLlama m = testing::MakeRandomLlama(false, true, 3);
  DeviceOptions options;
  options.device = 0;
  options.weight_dtype = kernels::WeightDtype::kInt8;
  auto loaded = LoadModelOnDevice(Source(m), options, nullptr);
  EXPECT_TRUE(absl::IsUnimplemented(loaded.status())) << loaded.status();
  EXPECT_NE(loaded.status().message().find("--weight_dtype=int8"),
            std::string::npos);
}

}  // namespace
}  // namespace longctx
