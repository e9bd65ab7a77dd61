// Fuzz target: safetensors parsing (model/folder/safetensors.h), which reads
// the 8-byte length and JSON header of weight files before they are mapped
// for serving.
//
// Input: the bytes of a safetensors file.
//
// Properties checked: FromBuffer never crashes, throws or reads outside the
// buffer; an error is INVALID_ARGUMENT naming the file; in a file that parses,
// every tensor lies inside the data section, its size is its element count
// times its element size, tensors come in offset order without overlapping,
// and Find returns each of them by name.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_check.h"
#include "model/folder/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longctx;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::FromBuffer(bytes, "fuzz.safetensors");
  if (!file.ok()) {
    FUZZ_CHECK(file.status().code() == absl::StatusCode::kInvalidArgument, "%s",
               file.status().ToString().c_str());
    FUZZ_CHECK(absl::StartsWith(file.status().message(), "fuzz.safetensors"),
               "the error does not name the file: %s",
               file.status().ToString().c_str());
    return 0;
  }
  const uint8_t* end = data + size;
  const uint8_t* previous_end = nullptr;
  for (const SafetensorsTensor& tensor : (*file)->tensors()) {
    FUZZ_CHECK(tensor.file == "fuzz.safetensors", "tensor.file");
    FUZZ_CHECK(tensor.data >= data + 8 && tensor.data <= end &&
                   tensor.size_bytes <= static_cast<size_t>(end - tensor.data),
               "tensor %s lies outside the buffer", tensor.name.c_str());
    if (tensor.size_bytes > 0) {
      // Touch the first and last byte: ASan reports any read outside.
      volatile uint8_t sink =
          tensor.data[0] ^ tensor.data[tensor.size_bytes - 1];
      (void)sink;
      FUZZ_CHECK(previous_end == nullptr || tensor.data >= previous_end,
                 "tensor %s overlaps the one before it", tensor.name.c_str());
      previous_end = tensor.data + tensor.size_bytes;
      // The element count (int64) times the element size is the byte size.
      const int64_t elements = tensor.num_elements();
      FUZZ_CHECK(elements > 0, "tensor %s has %lld elements",
                 tensor.name.c_str(), static_cast<long long>(elements));
      const uint64_t element_size =
          tensor.size_bytes / static_cast<uint64_t>(elements);
      FUZZ_CHECK(
          element_size * static_cast<uint64_t>(elements) == tensor.size_bytes &&
              (element_size == 1 || element_size == 2 || element_size == 4 ||
               element_size == 8),
          "tensor %s: %lld elements in %llu bytes", tensor.name.c_str(),
          static_cast<long long>(elements),
          static_cast<unsigned long long>(tensor.size_bytes));
    } else {
      FUZZ_CHECK(tensor.num_elements() == 0, "empty tensor %s has elements",
                 tensor.name.c_str());
    }
    (void)tensor.ShapeString();
    (void)SupportedDtype(tensor);
    FUZZ_CHECK((*file)->Find(tensor.name) == &tensor, "Find(%s)",
               tensor.name.c_str());
  }
  return 0;
}
