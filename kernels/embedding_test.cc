#include "kernels/embedding.h"

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"

namespace longctx::kernels {
namespace {

TEST(EmbeddingTest, CopiesRowsOfEveryDtypeExactly) {
  const int64_t vocab = 101, dim = 37, out_stride = 40;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> values(vocab * dim);
  for (float& f : values) f = dist(rng);
  const std::vector<int32_t> ids = {0, 100, 5, 5, 63, 1};
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBf16}) {
    std::vector<uint8_t> table(values.size() * DTypeSize(dtype));
    ConvertFromF32(values.data(), dtype, table.data(), vocab * dim);
    std::vector<float> exact(values.size());
    ConvertToF32(dtype, table.data(), exact.data(), vocab * dim);
    std::vector<float> out(ids.size() * out_stride, -1.0f);
    ASSERT_TRUE(EmbeddingLookup(table.data(), dtype, vocab, dim, ids.data(),
                                ids.size(), out.data(), out_stride)
                    .ok());
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int64_t x = 0; x < dim; ++x) {
        // Conversions to fp32 are exact: compare bit for bit.
        ASSERT_EQ(out[i * out_stride + x], exact[ids[i] * dim + x])
            << DTypeName(dtype) << " " << i << " " << x;
      }
      for (int64_t x = dim; x < out_stride; ++x) {
        ASSERT_EQ(out[i * out_stride + x], -1.0f);
      }
    }
  }
}

TEST(EmbeddingTest, RejectsOutOfRangeIdsWithoutWriting) {
  const std::vector<float> table(10 * 4, 1.0f);
  std::vector<float> out(3 * 4, -1.0f);
  for (int32_t bad : {10, -1}) {
    const std::vector<int32_t> ids = {0, bad, 2};
    const absl::Status s = EmbeddingLookup(table.data(), DType::kF32, 10, 4,
                                           ids.data(), 3, out.data(), 4);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    for (float v : out) EXPECT_EQ(v, -1.0f);
  }
}

}  // namespace
}  // namespace longctx::kernels
