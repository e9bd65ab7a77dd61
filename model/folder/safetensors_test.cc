#include "model/folder/safetensors.h"

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/folder/io_util.h"
#include "services/common/testing/temp_dir.h"

namespace longctx {
namespace {

using ::longctx::testing::NewTempDir;
using ::testing::HasSubstr;

template <typename T>
absl::string_view Bytes(const std::vector<T>& values) {
  return absl::string_view(reinterpret_cast<const char*>(values.data()),
                           values.size() * sizeof(T));
}

// RawFile builds a safetensors file byte by byte, for corrupt variants.
std::string RawFile(const std::string& header, const std::string& data,
                    uint64_t declared_header_size) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>((declared_header_size >> (8 * i)) & 0xff);
  }
  return out + header + data;
}
std::string RawFile(const std::string& header, const std::string& data) {
  return RawFile(header, data, header.size());
}

absl::Status OpenStatus(const std::string& path) {
  return SafetensorsFile::Open(path).status();
}

void ExpectCorrupt(const std::string& dir, const std::string& content,
                   const std::string& substring) {
  const std::string path = JoinPath(dir, "bad.safetensors");
  ASSERT_TRUE(WriteFileAtomically(path, content).ok());
  const absl::Status status = OpenStatus(path);
  ASSERT_FALSE(status.ok()) << substring;
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(substring));
  EXPECT_THAT(status.message(), HasSubstr("bad.safetensors"));
}

TEST(SafetensorsTest, WrittenTensorsReadBackWithTheirBytes) {
  const std::string dir = NewTempDir("roundtrip");
  const std::string path = JoinPath(dir, "a.safetensors");
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  const std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x7bff};
  const std::vector<uint16_t> bf16 = {0x3f80};
  const std::vector<int32_t> i32 = {1, 2, 3, 4};
  ASSERT_TRUE(WriteSafetensors(path,
                               {{{"w.f32", "F32", {2, 3}}, Bytes(f32)},
                                {{"w.f16", "F16", {3}}, Bytes(f16)},
                                {{"w.bf16", "BF16", {}}, Bytes(bf16)},
                                {{"w.i32", "I32", {2, 2}}, Bytes(i32)},
                                {{"w.empty", "F32", {0, 5}}, ""}},
                               {{"format", "pt"}})
                  .ok());

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  ASSERT_EQ((*file)->tensors().size(), 5u);
  EXPECT_EQ((*file)->tensors()[0].name, "w.f32");  // Data order.

  const SafetensorsTensor* t = (*file)->Find("w.f32");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, "F32");
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t->ShapeString(), "[2,3]");
  EXPECT_EQ(t->num_elements(), 6);
  EXPECT_EQ(t->size_bytes, 24u);
  EXPECT_EQ(t->file, path);
  EXPECT_EQ(std::memcmp(t->data, f32.data(), 24), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 4, 0u);
  EXPECT_EQ(*SupportedDtype(*t), kernels::DType::kF32);

  t = (*file)->Find("w.f16");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(std::memcmp(t->data, f16.data(), 6), 0);
  EXPECT_EQ(*SupportedDtype(*t), kernels::DType::kF16);

  t = (*file)->Find("w.bf16");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->shape.empty());
  EXPECT_EQ(t->num_elements(), 1);
  EXPECT_EQ(*SupportedDtype(*t), kernels::DType::kBf16);

  t = (*file)->Find("w.empty");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->size_bytes, 0u);

  EXPECT_EQ((*file)->Find("w.missing"), nullptr);
}

TEST(SafetensorsTest, UnsupportedDtypeIsDescribedButRefusedByName) {
  const std::string dir = NewTempDir("i32");
  const std::string path = JoinPath(dir, "a.safetensors");
  const std::vector<int32_t> i32 = {1, 2};
  ASSERT_TRUE(
      WriteSafetensors(path, {{{"position_ids", "I32", {2}}, Bytes(i32)}})
          .ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<kernels::DType> dtype =
      SupportedDtype(*(*file)->Find("position_ids"));
  ASSERT_FALSE(dtype.ok());
  EXPECT_EQ(dtype.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dtype.status().message(),
              HasSubstr("position_ids: dtype I32 is not supported"));
  EXPECT_THAT(dtype.status().message(), HasSubstr("a.safetensors"));
}

TEST(SafetensorsTest, HeaderIsPaddedToEightBytes) {
  const std::string dir = NewTempDir("padding");
  const std::string path = JoinPath(dir, "a.safetensors");
  const std::vector<float> one = {1.0f};
  ASSERT_TRUE(WriteSafetensors(path, {{{"x", "F32", {1}}, Bytes(one)}}).ok());
  absl::StatusOr<std::string> content = ReadFile(path);
  ASSERT_TRUE(content.ok());
  uint64_t header_size = 0;
  std::memcpy(&header_size, content->data(), 8);
  EXPECT_EQ(header_size % 8, 0u);
  EXPECT_EQ(content->size(), 8 + header_size + 4);
  EXPECT_EQ((*content)[8], '{');
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  const std::string dir = NewTempDir("missing");
  const absl::Status status = OpenStatus(JoinPath(dir, "none.safetensors"));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("none.safetensors"));
}

TEST(SafetensorsTest, CorruptFilesGiveClearErrors) {
  const std::string dir = NewTempDir("corrupt");
  const std::string good_header =
      R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data(8, '\1');

  ExpectCorrupt(dir, "", "truncated: the file has 0 bytes");
  ExpectCorrupt(dir, "abc", "truncated: the file has 3 bytes");
  ExpectCorrupt(dir, RawFile(good_header, data, 1000000),
                "header length 1000000 exceeds the file size");
  ExpectCorrupt(dir, RawFile(good_header, data, ~0ull),
                "exceeds the file size");
  ExpectCorrupt(dir, RawFile("{\"x\": [1, 2", data), "malformed JSON");
  ExpectCorrupt(dir, RawFile("[1, 2, 3]", data), "not a JSON object");
  ExpectCorrupt(
      dir,
      RawFile(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})",
              data),
      "tensor x: data_offsets [0, 16] run past the data section of 8 bytes");
  ExpectCorrupt(
      dir,
      RawFile(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
              data),
      "tensor x: data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs "
      "12");
  ExpectCorrupt(
      dir,
      RawFile(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
              data),
      "tensor x: \"data_offsets\" must be [begin, end]");
  ExpectCorrupt(
      dir,
      RawFile(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data),
      "tensor x: \"data_offsets\"");
  ExpectCorrupt(
      dir,
      RawFile(R"({"x":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})",
              data),
      "tensor x: unknown dtype \"F17\"");
  ExpectCorrupt(
      dir,
      RawFile(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
              data),
      "tensor x: shape [-2] has a dimension that is not a non-negative");
  ExpectCorrupt(
      dir,
      RawFile(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],)"
              R"("data_offsets":[0,8]}})",
              data),
      "tensor x: shape [4294967296,4294967296] is too large");
  ExpectCorrupt(dir,
                RawFile(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", data),
                "tensor x: \"dtype\" is missing");
  ExpectCorrupt(dir, RawFile(R"({"x": 3})", data),
                "tensor x: header entry is not a JSON object");
  ExpectCorrupt(
      dir,
      RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
              R"("b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]}})",
              data),
      "tensors a [0, 8) and b [4, 8) overlap");
  ExpectCorrupt(
      dir,
      RawFile(R"({"x":{"dtype":"F32","shape":[)" + std::string(100000, '[') +
                  std::string(100000, ']') + R"(],"data_offsets":[0,8]}})",
              data),
      "shape [[[[...]]]] has a dimension");
  ExpectCorrupt(dir, RawFile(R"({"__metadata__":{"n":1}})", data),
                "\"__metadata__\" entry n is not a string");
}

// A shape whose element count overflows int64 is refused even when a later
// dimension is 0: num_elements() would overflow (seen while writing
// //fuzz:safetensors_fuzz, whose UBSan build reports it on this input).
TEST(SafetensorsTest, ShapeWithTooManyElementsIsRefused) {
  const std::string header =
      R"({"a":{"dtype":"U8","shape":[4294967296,4294967295,0],)"
      R"("data_offsets":[0,0]}})";
  const std::string content = RawFile(header, "");
  const absl::Status status =
      SafetensorsFile::FromBuffer(content, "big.safetensors").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tensor a: shape"));
  EXPECT_THAT(status.message(), HasSubstr("is too large"));
}

TEST(SafetensorsTest, TruncatedFileIsAnErrorAtEveryLength) {
  const std::string dir = NewTempDir("truncated");
  const std::string path = JoinPath(dir, "a.safetensors");
  std::vector<float> values(100, 0.5f);
  ASSERT_TRUE(
      WriteSafetensors(path, {{{"x", "F32", {10, 10}}, Bytes(values)}}).ok());
  absl::StatusOr<std::string> content = ReadFile(path);
  ASSERT_TRUE(content.ok());
  for (size_t size = 0; size < content->size(); ++size) {
    ASSERT_TRUE(WriteFileAtomically(path, content->substr(0, size)).ok());
    const absl::Status status = OpenStatus(path);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << "size " << size;
  }
}

// Random bytes overwritten anywhere in a valid file never crash Open: it
// either succeeds (every tensor then lies inside the file) or says why not.
TEST(SafetensorsTest, RandomCorruptionNeverCrashes) {
  const std::string dir = NewTempDir("fuzz");
  const std::string path = JoinPath(dir, "a.safetensors");
  const std::vector<uint16_t> values(64, 0x3f80);
  ASSERT_TRUE(WriteSafetensors(path, {{{"a", "F32", {8, 4}},
                                       Bytes(std::vector<float>(32, 1.0f))},
                                      {{"b", "BF16", {64}}, Bytes(values)}})
                  .ok());
  absl::StatusOr<std::string> original = ReadFile(path);
  ASSERT_TRUE(original.ok());
  std::mt19937 rng(99);
  for (int trial = 0; trial < 500; ++trial) {
    std::string content = *original;
    const int edits = 1 + rng() % 4;
    for (int e = 0; e < edits; ++e) {
      // Favour the length prefix and the header, where the structure is.
      const size_t limit = rng() % 2 ? 8 + 140 : content.size();
      content[rng() % std::min(limit, content.size())] =
          static_cast<char>(rng());
    }
    if (rng() % 4 == 0) content.resize(rng() % content.size());
    ASSERT_TRUE(WriteFileAtomically(path, content).ok());
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(path);
    if (!file.ok()) {
      EXPECT_FALSE(file.status().message().empty());
      continue;
    }
    for (const SafetensorsTensor& tensor : (*file)->tensors()) {
      uint64_t sum = 0;  // Touch every byte: must not fault.
      for (uint64_t i = 0; i < tensor.size_bytes; ++i) sum += tensor.data[i];
      (void)sum;
    }
  }
}

// FromBuffer reads the bytes Open maps, with the same checks and messages.
TEST(SafetensorsTest, FromBufferMatchesOpen) {
  const std::string dir = NewTempDir("buffer");
  const std::string path = JoinPath(dir, "a.safetensors");
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f};
  ASSERT_TRUE(WriteSafetensors(path, {{{"w", "F32", {2, 2}}, Bytes(f32)}},
                               {{"format", "pt"}})
                  .ok());
  absl::StatusOr<std::string> content = ReadFile(path);
  ASSERT_TRUE(content.ok());

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::FromBuffer(*content, "in-memory");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->path(), "in-memory");
  EXPECT_EQ((*file)->file_size(), content->size());
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  const SafetensorsTensor* t = (*file)->Find("w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->file, "in-memory");
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 2}));
  // The tensor points into the caller's buffer, not a copy.
  EXPECT_GE(reinterpret_cast<const char*>(t->data), content->data());
  EXPECT_LE(reinterpret_cast<const char*>(t->data) + t->size_bytes,
            content->data() + content->size());
  EXPECT_EQ(std::memcmp(t->data, f32.data(), 16), 0);

  const std::string truncated = content->substr(0, content->size() - 1);
  const absl::Status status =
      SafetensorsFile::FromBuffer(truncated, "in-memory").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("in-memory: tensor w"));
  EXPECT_THAT(status.message(), HasSubstr("run past the data section"));
  EXPECT_EQ(SafetensorsFile::FromBuffer("", "empty").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsWriterTest, RejectsBadSpecsAndSizes) {
  const std::string dir = NewTempDir("writer");
  const std::string path = JoinPath(dir, "a.safetensors");
  const std::vector<float> two = {1.0f, 2.0f};

  absl::Status status = WriteSafetensors(
      path, {{{"x", "F32", {2}}, Bytes(two)}, {{"x", "F32", {2}}, Bytes(two)}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tensor x is given twice"));

  status = WriteSafetensors(path, {{{"x", "F32", {3}}, Bytes(two)}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      status.message(),
      HasSubstr("tensor x: got 8 bytes, but shape [3] of F32 needs 12"));

  status = WriteSafetensors(path, {{{"x", "Q4", {2}}, Bytes(two)}});
  EXPECT_THAT(status.message(), HasSubstr("unknown dtype \"Q4\""));

  status = WriteSafetensors(path, {{{"__metadata__", "F32", {2}}, Bytes(two)}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(path, {{"x", "F32", {2}}, {"y", "F32", {2}}},
                                {});
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->WriteNext(Bytes(two)).ok());
  status = (*writer)->Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("the first is y"));
  writer->reset();
  EXPECT_FALSE(PathExists(path));  // Nothing half-written is left behind.
}

TEST(WeightStoreTest, FindsTensorsInASingleFile) {
  const std::string dir = NewTempDir("single");
  const std::vector<float> two = {1.0f, 2.0f};
  ASSERT_TRUE(WriteSafetensors(JoinPath(dir, "model.safetensors"),
                               {{{"a", "F32", {2}}, Bytes(two)}})
                  .ok());
  absl::StatusOr<std::unique_ptr<WeightStore>> store = WeightStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->num_tensors(), 1u);
  ASSERT_NE((*store)->Find("a"), nullptr);
  EXPECT_EQ((*store)->Find("b"), nullptr);
}

TEST(WeightStoreTest, FindsTensorsAcrossShardsOfAnIndex) {
  const std::string dir = NewTempDir("sharded");
  const std::vector<float> two = {1.0f, 2.0f};
  const std::vector<float> three = {3.0f, 4.0f, 5.0f};
  ASSERT_TRUE(WriteSafetensors(JoinPath(dir, "s1.safetensors"),
                               {{{"a", "F32", {2}}, Bytes(two)}})
                  .ok());
  ASSERT_TRUE(WriteSafetensors(JoinPath(dir, "s2.safetensors"),
                               {{{"b", "F32", {3}}, Bytes(three)}})
                  .ok());
  ASSERT_TRUE(
      WriteFileAtomically(JoinPath(dir, "model.safetensors.index.json"),
                          R"({"metadata": {"total_size": 20}, "weight_map": )"
                          R"({"a": "s1.safetensors", "b": "s2.safetensors"}})")
          .ok());
  absl::StatusOr<std::unique_ptr<WeightStore>> store = WeightStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->files().size(), 2u);
  const SafetensorsTensor* b = (*store)->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_THAT(b->file, HasSubstr("s2.safetensors"));
  EXPECT_EQ(std::memcmp(b->data, three.data(), 12), 0);
}

TEST(WeightStoreTest, BadIndexesGiveClearErrors) {
  const std::string dir = NewTempDir("bad_index");
  const std::vector<float> two = {1.0f, 2.0f};
  ASSERT_TRUE(WriteSafetensors(JoinPath(dir, "s1.safetensors"),
                               {{{"a", "F32", {2}}, Bytes(two)}})
                  .ok());
  ASSERT_TRUE(WriteSafetensors(JoinPath(dir, "s2.safetensors"),
                               {{{"a", "F32", {2}}, Bytes(two)}})
                  .ok());
  const std::string index = JoinPath(dir, "model.safetensors.index.json");
  struct Case {
    const char* json;
    absl::StatusCode code;
    const char* message;
  } cases[] = {
      {R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}})",
       absl::StatusCode::kInvalidArgument,
       "weight_map places b in s1.safetensors, which has no such tensor"},
      {R"({"weight_map": {"a": "../s1.safetensors"}})",
       absl::StatusCode::kInvalidArgument, "is not a file name in the folder"},
      {R"({"weight_map": {"a": "s1.safetensors", "c": "s2.safetensors"}})",
       absl::StatusCode::kInvalidArgument, "tensor a is in both"},
      {R"({"weight_map": {"a": "s3.safetensors"}})",
       absl::StatusCode::kNotFound, "s3.safetensors: not found"},
      {R"({"metadata": {}})", absl::StatusCode::kInvalidArgument,
       "no \"weight_map\" object"},
      {R"({"weight_map": )", absl::StatusCode::kInvalidArgument,
       "malformed JSON"},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(WriteFileAtomically(index, c.json).ok());
    const absl::Status status = WeightStore::Open(dir).status();
    EXPECT_EQ(status.code(), c.code) << c.json << " " << status;
    EXPECT_THAT(status.message(), HasSubstr(c.message)) << c.json;
  }
}

TEST(WeightStoreTest, FolderWithoutWeightsIsNotFound) {
  const std::string dir = NewTempDir("no_weights");
  const absl::Status status = WeightStore::Open(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(
      status.message(),
      HasSubstr("no model.safetensors or model.safetensors.index.json"));
}

}  // namespace
}  // namespace longctx
