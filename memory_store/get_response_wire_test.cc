#include "memory_store/get_response_wire.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/memory_store.pb.h"

namespace longctx {
namespace {

using memory_store::v1::GetResponse;

// Splits `bytes` into pieces at random points (empty pieces included).
std::vector<absl::string_view> Split(absl::string_view bytes,
                                     std::mt19937& rng) {
  std::vector<absl::string_view> pieces;
  size_t at = 0;
  while (at < bytes.size()) {
    const size_t n = std::min<size_t>(rng() % 7, bytes.size() - at);
    pieces.push_back(bytes.substr(at, n));
    at += n;
  }
  pieces.push_back(bytes.substr(at));
  return pieces;
}

std::string Joined(const GetResponseView& view) {
  std::string joined;
  for (absl::string_view piece : view.data)
    joined.append(piece.data(), piece.size());
  return joined;
}

void ExpectSame(const GetResponse& message, const GetResponseView& view) {
  EXPECT_EQ(view.num_parts, message.num_parts());
  EXPECT_EQ(view.part, message.part());
  EXPECT_EQ(view.part_end, message.part_end());
  EXPECT_EQ(Joined(view), message.data());
  EXPECT_EQ(view.data_size, message.data().size());
}

TEST(GetResponseWireTest, ReadsWhatProtobufWritesHoweverSplit) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 500; ++trial) {
    GetResponse message;
    message.set_num_parts(static_cast<int32_t>(rng() % 3 == 0 ? -1 : rng()));
    message.set_part(static_cast<int32_t>(rng() % 40));
    message.set_part_end(rng() % 2 == 0);
    std::string data(rng() % 300, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    message.set_data(data);
    const std::string bytes = message.SerializeAsString();
    GetResponseView view;
    ASSERT_TRUE(ParseGetResponse(Split(bytes, rng), &view).ok());
    ExpectSame(message, view);
  }
}

TEST(GetResponseWireTest, ProtobufReadsThePrefixAndData) {
  for (int32_t num_parts : {0, 1, 9, -3}) {
    for (int32_t part : {0, 5, 300000}) {
      for (bool part_end : {false, true}) {
        for (size_t size : {0, 1, 127, 128, 70000}) {
          const std::string data(size, 'k');
          const std::string bytes =
              EncodeGetResponsePrefix(num_parts, part, part_end, size) + data;
          GetResponse message;
          ASSERT_TRUE(message.ParseFromString(bytes));
          EXPECT_EQ(message.num_parts(), num_parts);
          EXPECT_EQ(message.part(), part);
          EXPECT_EQ(message.part_end(), part_end);
          EXPECT_EQ(message.data(), data);
          GetResponseView view;
          ASSERT_TRUE(ParseGetResponse({bytes}, &view).ok());
          ExpectSame(message, view);
        }
      }
    }
  }
}

TEST(GetResponseWireTest, SkipsUnknownFieldsAndKeepsTheLastData) {
  // Field 9 as a varint, field 10 as fixed64, field 11 as fixed32, field 12
  // length-delimited, num_parts (1) sent as bytes, then data twice.
  const std::string bytes = std::string(
      "\x48\x05"
      "\x51\x01\x02\x03\x04\x05\x06\x07\x08"
      "\x5d\x01\x02\x03\x04"
      "\x62\x02zz"
      "\x0a\x01q"
      "\x1a\x03old"
      "\x08\x04"
      "\x1a\x03new",
      35);
  GetResponse message;
  ASSERT_TRUE(message.ParseFromString(bytes));
  GetResponseView view;
  ASSERT_TRUE(ParseGetResponse({bytes}, &view).ok());
  ExpectSame(message, view);
  EXPECT_EQ(Joined(view), "new");
  EXPECT_EQ(view.num_parts, 4);
}

TEST(GetResponseWireTest, EveryTruncationFailsAsProtobufDoes) {
  GetResponse message;
  message.set_num_parts(300);
  message.set_part(2);
  message.set_part_end(true);
  message.set_data(std::string(200, 'd'));
  const std::string bytes = message.SerializeAsString();
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string cut = bytes.substr(0, n);
    GetResponse parsed;
    const bool protobuf_ok = parsed.ParseFromString(cut);
    GetResponseView view;
    const absl::Status status = ParseGetResponse({cut}, &view);
    EXPECT_EQ(status.ok(), protobuf_ok) << "cut at " << n;
    if (!status.ok()) {
      EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    }
  }
}

TEST(GetResponseWireTest, RejectsMalformedMessages) {
  GetResponseView view;
  // A varint of 11 bytes.
  EXPECT_EQ(ParseGetResponse({std::string(11, '\xff')}, &view).code(),
            absl::StatusCode::kDataLoss);
  // Field number 0.
  EXPECT_EQ(ParseGetResponse({std::string("\x00\x01", 2)}, &view).code(),
            absl::StatusCode::kDataLoss);
  // A group.
  EXPECT_EQ(ParseGetResponse({std::string("\x0b\x0c", 2)}, &view).code(),
            absl::StatusCode::kDataLoss);
  // Wire type 6.
  EXPECT_EQ(ParseGetResponse({std::string("\x0e", 1)}, &view).code(),
            absl::StatusCode::kDataLoss);
  // A data length far past the end.
  EXPECT_EQ(
      ParseGetResponse({std::string("\x1a\xff\xff\xff\xff\x0f", 6)}, &view)
          .code(),
      absl::StatusCode::kDataLoss);
}

TEST(GetResponseWireTest, WhatItAcceptsProtobufAcceptsAlike) {
  std::mt19937 rng(11);
  int accepted = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string bytes(rng() % 24, '\0');
    for (char& c : bytes) {
      // Mostly small tags of the known fields, so some inputs parse.
      c = static_cast<char>(rng() % 2 ? rng() % 0x30 : rng());
    }
    GetResponseView view;
    if (!ParseGetResponse(Split(bytes, rng), &view).ok()) continue;
    ++accepted;
    GetResponse message;
    ASSERT_TRUE(message.ParseFromString(bytes));
    ExpectSame(message, view);
  }
  EXPECT_GT(accepted, 100);
}

}  // namespace
}  // namespace longctx
