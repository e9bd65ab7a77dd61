#include "kvblock/kv_layout.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

TEST(KvDtypeTest, NamesParseBackAndOthersAreRefusedByName) {
  for (KvDtype dtype : {KvDtype::kF16, KvDtype::kF32, KvDtype::kBf16}) {
    absl::StatusOr<KvDtype> parsed = ParseKvDtype(KvDtypeName(dtype));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, dtype);
  }
  absl::StatusOr<KvDtype> fp8 = ParseKvDtype("fp8");
  EXPECT_EQ(fp8.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(fp8.status().message(), HasSubstr("\"fp8\""));
}

TEST(KvLayoutTest, SizesOfAnAwkwardBlock) {
  KvLayout layout;
  layout.num_layers = 3;
  layout.num_kv_heads = 5;
  layout.head_dim = 12;
  layout.block_size = 7;
  layout.dtype = KvDtype::kF16;
  EXPECT_EQ(layout.ElementBytes(), 2u);
  EXPECT_EQ(layout.TensorBytes(), 5u * 7 * 12 * 2);
  EXPECT_EQ(layout.LayerBytes(), 2u * 5 * 7 * 12 * 2);
  EXPECT_EQ(layout.BlockBytes(), 3u * 2 * 5 * 7 * 12 * 2);
  layout.dtype = KvDtype::kF32;
  EXPECT_EQ(layout.BlockBytes(), 3u * 2 * 5 * 7 * 12 * 4);
  layout.dtype = KvDtype::kBf16;
  EXPECT_EQ(layout.BlockBytes(), 3u * 2 * 5 * 7 * 12 * 2);
}

}  // namespace
}  // namespace longctx
