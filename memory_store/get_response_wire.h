// The wire form of memory_store.v1.GetResponse (proto/memory_store.proto),
// written and read in place so a block's bytes cross gRPC without a protobuf
// copy on either side: the server sends a few bytes of fields followed by a
// slice that references the value it read from RocksDB, and the client reads
// the data field where it landed in the received slices.
//
// The bytes are the standard protobuf encoding of the message, so a client
// that uses the generated GetResponse parser reads them unchanged.
#ifndef LONGCTX_MEMORY_STORE_GET_RESPONSE_WIRE_H_
#define LONGCTX_MEMORY_STORE_GET_RESPONSE_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace longctx {

// EncodeGetResponsePrefix returns the encoding of a GetResponse's num_parts,
// part and part_end fields followed by the tag and length of a data field of
// `data_size` bytes: appending those bytes completes the message.
std::string EncodeGetResponsePrefix(int32_t num_parts, int32_t part,
                                    bool part_end, size_t data_size);

// GetResponseView is a GetResponse parsed in place: `data` are the pieces of
// the data field, in order, pointing into the buffers that were parsed.
struct GetResponseView {
  int32_t num_parts = 0;
  int32_t part = 0;
  bool part_end = false;
  std::vector<absl::string_view> data;
  size_t data_size = 0;  // Sum of the pieces' sizes.
};

// ParseGetResponse parses the message whose bytes are the concatenation of
// `buffers` (hostile: any bytes). As protobuf does, a field seen twice keeps
// its last value and fields of other numbers, or of a known number with
// another wire type, are skipped. DATA_LOSS naming the problem for a
// truncated or malformed message (a varint over 10 bytes, a length past the
// end, field number 0, or a group, which GetResponse never holds). Never
// reads outside `buffers`.
absl::Status ParseGetResponse(absl::Span<const absl::string_view> buffers,
                              GetResponseView* view);

}  // namespace longctx

#endif  // LONGCTX_MEMORY_STORE_GET_RESPONSE_WIRE_H_
