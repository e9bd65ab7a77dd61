#include "memory_store/get_response_wire.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace longctx {
namespace {

// Field numbers and wire types of GetResponse (proto/memory_store.proto).
constexpr uint32_t kNumPartsField = 1;
constexpr uint32_t kPartField = 2;
constexpr uint32_t kDataField = 3;
constexpr uint32_t kPartEndField = 4;
constexpr uint32_t kVarint = 0;
constexpr uint32_t kFixed64 = 1;
constexpr uint32_t kLengthDelimited = 2;
constexpr uint32_t kStartGroup = 3;
constexpr uint32_t kEndGroup = 4;
constexpr uint32_t kFixed32 = 5;
constexpr int kMaxVarintBytes = 10;

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void AppendTag(uint32_t field, uint32_t wire_type, std::string* out) {
  AppendVarint((static_cast<uint64_t>(field) << 3) | wire_type, out);
}

// Cursor reads a sequence of buffers as one stream of bytes.
class Cursor {
 public:
  explicit Cursor(absl::Span<const absl::string_view> buffers)
      : buffers_(buffers) {
    SkipEmpty();
  }

  bool AtEnd() const { return index_ >= buffers_.size(); }

  // Reads a varint of at most 10 bytes.
  absl::Status ReadVarint(uint64_t* value) {
    uint64_t result = 0;
    for (int i = 0; i < kMaxVarintBytes; ++i) {
      if (AtEnd()) return absl::DataLossError("GetResponse ends in a varint");
      const uint8_t byte = static_cast<uint8_t>(buffers_[index_][offset_]);
      Advance(1);
      result |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
      if ((byte & 0x80) == 0) {
        *value = result;
        return absl::OkStatus();
      }
    }
    return absl::DataLossError("GetResponse holds a varint over 10 bytes");
  }

  // Takes the next `size` bytes as pieces appended to `pieces` (when not
  // null), or fails leaving the cursor anywhere.
  absl::Status Take(uint64_t size, std::vector<absl::string_view>* pieces) {
    while (size > 0) {
      if (AtEnd()) {
        return absl::DataLossError(
            "GetResponse holds a field longer than the message");
      }
      const absl::string_view buffer = buffers_[index_];
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(size, buffer.size() - offset_));
      if (pieces != nullptr) pieces->push_back(buffer.substr(offset_, n));
      Advance(n);
      size -= n;
    }
    return absl::OkStatus();
  }

 private:
  void Advance(size_t n) {
    offset_ += n;
    if (offset_ == buffers_[index_].size()) {
      ++index_;
      offset_ = 0;
      SkipEmpty();
    }
  }

  void SkipEmpty() {
    while (index_ < buffers_.size() && buffers_[index_].empty()) ++index_;
  }

  absl::Span<const absl::string_view> buffers_;
  size_t index_ = 0;
  size_t offset_ = 0;
};

}  // namespace

std::string EncodeGetResponsePrefix(int32_t num_parts, int32_t part,
                                    bool part_end, size_t data_size) {
  std::string out;
  // Protobuf's own serializer leaves out fields at their default value; the
  // parser takes either form.
  if (num_parts != 0) {
    AppendTag(kNumPartsField, kVarint, &out);
    AppendVarint(static_cast<uint64_t>(static_cast<int64_t>(num_parts)), &out);
  }
  if (part != 0) {
    AppendTag(kPartField, kVarint, &out);
    AppendVarint(static_cast<uint64_t>(static_cast<int64_t>(part)), &out);
  }
  if (part_end) {
    AppendTag(kPartEndField, kVarint, &out);
    AppendVarint(1, &out);
  }
  AppendTag(kDataField, kLengthDelimited, &out);
  AppendVarint(data_size, &out);
  return out;
}

absl::Status ParseGetResponse(absl::Span<const absl::string_view> buffers,
                              GetResponseView* view) {
  *view = GetResponseView();
  Cursor cursor(buffers);
  while (!cursor.AtEnd()) {
    uint64_t tag = 0;
    absl::Status status = cursor.ReadVarint(&tag);
    if (!status.ok()) return status;
    if (tag > UINT32_MAX) {
      return absl::DataLossError("GetResponse holds a tag over 32 bits");
    }
    const uint32_t field = static_cast<uint32_t>(tag >> 3);
    const uint32_t wire_type = static_cast<uint32_t>(tag & 7);
    if (field == 0) {
      return absl::DataLossError("GetResponse holds field number 0");
    }
    switch (wire_type) {
      case kVarint: {
        uint64_t value = 0;
        status = cursor.ReadVarint(&value);
        if (!status.ok()) return status;
        // int32 fields keep the low 32 bits, as protobuf does.
        if (field == kNumPartsField) {
          view->num_parts = static_cast<int32_t>(static_cast<uint32_t>(value));
        } else if (field == kPartField) {
          view->part = static_cast<int32_t>(static_cast<uint32_t>(value));
        } else if (field == kPartEndField) {
          view->part_end = value != 0;
        }
        break;
      }
      case kLengthDelimited: {
        uint64_t size = 0;
        status = cursor.ReadVarint(&size);
        if (!status.ok()) return status;
        if (field == kDataField) {
          // A bytes field seen again replaces the earlier value.
          view->data.clear();
          view->data_size = 0;
          status = cursor.Take(size, &view->data);
          view->data_size = static_cast<size_t>(size);
        } else {
          status = cursor.Take(size, nullptr);
        }
        if (!status.ok()) return status;
        break;
      }
      case kFixed64:
        status = cursor.Take(8, nullptr);
        if (!status.ok()) return status;
        break;
      case kFixed32:
        status = cursor.Take(4, nullptr);
        if (!status.ok()) return status;
        break;
      case kStartGroup:
      case kEndGroup:
        return absl::DataLossError(
            absl::StrCat("GetResponse holds a group (field ", field, ")"));
      default:
        return absl::DataLossError(absl::StrCat(
            "GetResponse holds wire type ", wire_type, " (field ", field, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace longctx
