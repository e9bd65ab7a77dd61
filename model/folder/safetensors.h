// Reading and writing of safetensors files (https://huggingface.co/docs/
// safetensors): an 8-byte little-endian header length N, N bytes of JSON
// header ({"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
// "__metadata__": {..}}), then the data section, offsets relative to its
// start.
//
// SafetensorsFile maps a file read-only and describes its tensors without
// copying them; WeightStore finds a model's tensors across the shards of a
// Hugging Face folder; SafetensorsWriter writes files (for the tiny-model
// maker and tests).
#ifndef LONGCTX_MODEL_FOLDER_SAFETENSORS_H_
#define LONGCTX_MODEL_FOLDER_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "kernels/dtype.h"

namespace longctx {

// SafetensorsTensor describes one tensor of a mapped file.
struct SafetensorsTensor {
  std::string name;
  // As written in the header: "F32", "F16", "BF16", "I32", "U8", ... Any dtype
  // of the safetensors format is described; SupportedDtype says whether
  // longctx can use it.
  std::string dtype;
  std::vector<int64_t> shape;  // Row-major; [] for a scalar.
  // The tensor's bytes inside the mapping of `file`, valid while the owning
  // SafetensorsFile lives. Aligned to the element size when the file keeps
  // it so (files from SafetensorsWriter with one dtype, or from Hugging
  // Face's writer); readers must not assume more.
  const uint8_t* data = nullptr;
  uint64_t size_bytes = 0;  // = num_elements() * element size.
  std::string file;         // Path of the file that holds it.

  int64_t num_elements() const;
  // ShapeString renders the shape as "[4096,128]".
  std::string ShapeString() const;
};

// SupportedDtype returns the element type of `tensor` when it is F32, F16 or
// BF16, else INVALID_ARGUMENT "<file>: <name>: dtype I32 is not supported
// (F32, F16 and BF16 are)".
absl::StatusOr<kernels::DType> SupportedDtype(const SafetensorsTensor& tensor);

// SafetensorsDtypeName returns the header name of a supported element type:
// "F32", "F16" or "BF16".
const char* SafetensorsDtypeName(kernels::DType dtype);

// SafetensorsFile is one mapped safetensors file (or one in memory, see
// FromBuffer). Immutable after Open and thread-safe. The mapping is released by
// the destructor; every pointer into it dies with the object.
class SafetensorsFile {
 public:
  // Open maps `path` read-only and checks its layout: the header length within
  // the file (and at most 100 MiB), a JSON object header, for every tensor a
  // known dtype, non-negative dimensions, data_offsets [begin, end] within the
  // data section with end - begin == elements * element size, and no two
  // tensors' bytes overlapping. Returns NOT_FOUND when the file does not
  // exist and INVALID_ARGUMENT "<path>: <problem>" (naming the tensor where
  // one is at fault) for a truncated or corrupt file; never crashes on bad
  // bytes. (A file truncated by someone else *after* Open makes later reads of
  // the mapping fault, as with any mapped file.)
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);

  // FromBuffer describes the safetensors file whose bytes are `contents`
  // (not copied: they must outlive the object and every pointer into them),
  // with the checks of Open; `name` stands for the path in path(), in the
  // tensors' `file` and in error messages. For files already in memory, and
  // for the fuzz target of the parser.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBuffer(
      absl::string_view contents, const std::string& name);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Every tensor, in the order of their data offsets.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  // Find returns the tensor called `name`, or null.
  const SafetensorsTensor* Find(absl::string_view name) const;
  // The header's "__metadata__" (string to string), empty when absent.
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  // The size of the file in bytes.
  uint64_t file_size() const { return size_; }

 private:
  SafetensorsFile() = default;
  // Parse checks `contents` (the whole file) and fills the tensors and the
  // metadata.
  absl::Status Parse(absl::string_view contents);

  std::string path_;
  void* mapping_ = nullptr;  // Null for FromBuffer.
  uint64_t size_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;  // Name -> tensors_ entry.
  std::map<std::string, std::string> metadata_;
};

// WeightStore is the set of tensors of a Hugging Face model folder: the shards
// listed by model.safetensors.index.json when present, else the single file
// model.safetensors. Immutable after Open and thread-safe.
class WeightStore {
 public:
  // Open opens every file of `model_dir` (see SafetensorsFile::Open for the
  // checks). Returns NOT_FOUND "<dir>: no model.safetensors or
  // model.safetensors.index.json" when there are no weights, and
  // INVALID_ARGUMENT for a malformed index (no "weight_map", a file name that
  // is not a plain name, a tensor the index places in a shard that lacks it)
  // or a tensor name present in two shards.
  static absl::StatusOr<std::unique_ptr<WeightStore>> Open(
      const std::string& model_dir);

  // Find returns the tensor called `name`, or null when no file has it.
  const SafetensorsTensor* Find(absl::string_view name) const;

  // The opened files, in the order of their names.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const {
    return files_;
  }
  // The number of tensors across the files.
  size_t num_tensors() const { return tensors_.size(); }

 private:
  WeightStore() = default;

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  absl::flat_hash_map<std::string, const SafetensorsTensor*> tensors_;
};

// SafetensorsTensorSpec names a tensor to write: its dtype as in the header
// (any dtype of the format), and its shape.
struct SafetensorsTensorSpec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
};

// SafetensorsWriter writes one file tensor by tensor, so that a large model
// never has to be held in memory at once. The data of the tensors follow each
// other in the order of the specs, with no gaps; the header is padded with
// spaces to a multiple of 8 bytes. After an error the writer is unusable:
// destroy it (which removes the partial file). Not thread-safe.
//
//   auto writer = SafetensorsWriter::Create(path, specs, {});
//   for (...) (*writer)->WriteNext(bytes_of_tensor_i);
//   (*writer)->Finish();
class SafetensorsWriter {
 public:
  // Create starts `path` (written to a temporary file in the same folder, put
  // in place by Finish). INVALID_ARGUMENT for an empty or duplicate name, a
  // name starting with "__", an unknown dtype or a negative dimension; the
  // file system's errors (naming the path) otherwise.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<SafetensorsTensorSpec> specs,
      const std::map<std::string, std::string>& metadata);

  // Removes the temporary file when Finish did not succeed.
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // WriteNext writes the bytes of the next tensor in spec order.
  // INVALID_ARGUMENT when the size is not the spec's, FAILED_PRECONDITION when
  // every tensor was already written.
  absl::Status WriteNext(absl::string_view bytes);

  // Finish flushes the file and renames it to its path. FAILED_PRECONDITION
  // when tensors are missing.
  absl::Status Finish();

 private:
  SafetensorsWriter() = default;
  absl::Status WriteAll(absl::string_view bytes);

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  std::vector<SafetensorsTensorSpec> specs_;
  std::vector<uint64_t> sizes_;  // Bytes of each spec's data.
  size_t next_ = 0;
  bool finished_ = false;
};

// SafetensorsTensorData is a tensor and its bytes, for WriteSafetensors.
struct SafetensorsTensorData {
  SafetensorsTensorSpec spec;
  absl::string_view bytes;  // Not owned; must live until the call returns.
};

// WriteSafetensors writes `tensors`, in order, to `path` (see
// SafetensorsWriter for the errors).
absl::Status WriteSafetensors(
    const std::string& path, absl::Span<const SafetensorsTensorData> tensors,
    const std::map<std::string, std::string>& metadata = {});

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_SAFETENSORS_H_
