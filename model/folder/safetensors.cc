#include "model/folder/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/folder/io_util.h"

namespace longctx {
namespace {

using Json = nlohmann::json;

// The largest header accepted; real headers are well under 1 MiB, and the
// bound keeps a corrupt length from asking for gigabytes of parsing.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// ElementSize returns the bytes of one element of a safetensors dtype, or 0
// for a name the format does not define.
uint64_t ElementSize(absl::string_view dtype) {
  static const std::pair<const char*, uint64_t> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  for (const auto& [name, size] : kSizes) {
    if (dtype == name) return size;
  }
  return 0;
}

std::string ShapeToString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// NumBytes computes elements * element_size for `shape` (dimensions >= 0);
// false when the element count overflows int64 (SafetensorsTensor::
// num_elements) or the bytes overflow 64 bits, even if a later dimension is
// 0.
bool NumBytes(absl::Span<const int64_t> shape, uint64_t element_size,
              uint64_t* bytes) {
  int64_t elements = 1;
  for (int64_t dim : shape) {
    if (__builtin_mul_overflow(elements, dim, &elements)) return false;
  }
  return !__builtin_mul_overflow(static_cast<uint64_t>(elements), element_size,
                                 bytes);
}

absl::Status Corrupt(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

absl::Status BadTensor(absl::string_view path, absl::string_view name,
                       absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": tensor ", name, ": ", problem));
}

// ReadUint reads a JSON non-negative integer.
bool ReadUint(const Json& value, uint64_t* out) {
  if (!value.is_number_unsigned()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0) return false;
  }
  *out = value.get<uint64_t>();
  return true;
}

// ParseTensorEntry checks one header entry and fills `tensor` (all but data
// and size_bytes), `begin` and `end`.
absl::Status ParseTensorEntry(absl::string_view path, const std::string& name,
                              const Json& entry, SafetensorsTensor* tensor,
                              uint64_t* begin, uint64_t* end) {
  if (!entry.is_object()) {
    return BadTensor(path, name, "header entry is not a JSON object");
  }
  auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) {
    return BadTensor(path, name, "\"dtype\" is missing or not a string");
  }
  tensor->name = name;
  tensor->dtype = dtype->get<std::string>();
  if (ElementSize(tensor->dtype) == 0) {
    return BadTensor(path, name,
                     absl::StrCat("unknown dtype \"", tensor->dtype, "\""));
  }
  auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) {
    return BadTensor(path, name, "\"shape\" is missing or not a list");
  }
  for (const Json& dim : *shape) {
    uint64_t value = 0;
    if (!ReadUint(dim, &value) || value > static_cast<uint64_t>(INT64_MAX)) {
      return BadTensor(path, name,
                       absl::StrCat("shape ", JsonForMessage(*shape),
                                    " has a dimension that is not a "
                                    "non-negative integer"));
    }
    tensor->shape.push_back(static_cast<int64_t>(value));
  }
  auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
      !ReadUint((*offsets)[0], begin) || !ReadUint((*offsets)[1], end) ||
      *begin > *end) {
    return BadTensor(
        path, name,
        absl::StrCat(
            "\"data_offsets\" must be [begin, end] with 0 <= begin "
            "<= end, got ",
            offsets == entry.end() ? "nothing" : JsonForMessage(*offsets)));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t SafetensorsTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

std::string SafetensorsTensor::ShapeString() const {
  return ShapeToString(shape);
}

absl::StatusOr<kernels::DType> SupportedDtype(const SafetensorsTensor& tensor) {
  if (tensor.dtype == "F32") return kernels::DType::kF32;
  if (tensor.dtype == "F16") return kernels::DType::kF16;
  if (tensor.dtype == "BF16") return kernels::DType::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat(tensor.file, ": ", tensor.name, ": dtype ", tensor.dtype,
                   " is not supported (F32, F16 and BF16 are)"));
}

const char* SafetensorsDtypeName(kernels::DType dtype) {
  switch (dtype) {
    case kernels::DType::kF32:
      return "F32";
    case kernels::DType::kF16:
      return "F16";
    case kernels::DType::kBf16:
      return "BF16";
  }
  return "F32";
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(path + ": not found");
    return ErrnoToStatus(errno, path);
  }
  struct stat info;
  if (fstat(fd, &info) != 0) {
    const int error = errno;
    close(fd);
    return ErrnoToStatus(error, path);
  }
  if (!S_ISREG(info.st_mode)) {
    close(fd);
    return Corrupt(path, "not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  if (size < 8) {
    close(fd);
    return Corrupt(path, absl::StrCat("truncated: the file has ", size,
                                      " bytes, fewer than the 8-byte header "
                                      "length"));
  }
  void* mapping = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_error = errno;
  close(fd);  // The mapping keeps the file open.
  if (mapping == MAP_FAILED) return ErrnoToStatus(map_error, path + ": mmap");

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = mapping;
  file->size_ = size;
  LONGCTX_RETURN_IF_ERROR(
      file->Parse(absl::string_view(static_cast<const char*>(mapping), size)));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBuffer(
    absl::string_view contents, const std::string& name) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = name;
  file->size_ = contents.size();
  LONGCTX_RETURN_IF_ERROR(file->Parse(contents));
  return file;
}

absl::Status SafetensorsFile::Parse(absl::string_view contents) {
  const std::string& path = path_;
  const uint64_t size = contents.size();
  if (size < 8) {
    return Corrupt(path, absl::StrCat("truncated: the file has ", size,
                                      " bytes, fewer than the 8-byte header "
                                      "length"));
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(contents.data());

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  if (header_size > size - 8) {
    return Corrupt(
        path,
        absl::StrCat("header length ", header_size, " exceeds the file size ",
                     size, " (truncated or not a safetensors file)"));
  }
  if (header_size > kMaxHeaderBytes) {
    return Corrupt(path, absl::StrCat("header length ", header_size,
                                      " is above the limit ", kMaxHeaderBytes));
  }
  const absl::string_view header_text(reinterpret_cast<const char*>(bytes + 8),
                                      header_size);
  absl::StatusOr<Json> header = ParseJson(header_text, path + ": header");
  if (!header.ok()) return header.status();
  if (!header->is_object()) {
    return Corrupt(path, "the header is not a JSON object");
  }

  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = size - data_start;
  struct Range {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Range> ranges;
  for (auto it = header->begin(); it != header->end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) {
        return Corrupt(path, "\"__metadata__\" is not a JSON object");
      }
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return Corrupt(path, absl::StrCat("\"__metadata__\" entry ", m.key(),
                                            " is not a string"));
        }
        metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    SafetensorsTensor tensor;
    uint64_t begin = 0, end = 0;
    LONGCTX_RETURN_IF_ERROR(
        ParseTensorEntry(path, it.key(), *it, &tensor, &begin, &end));
    if (end > data_size) {
      return BadTensor(
          path, tensor.name,
          absl::StrCat("data_offsets [", begin, ", ", end,
                       "] run past the data section of ", data_size,
                       " bytes (truncated or corrupt file)"));
    }
    uint64_t expected = 0;
    if (!NumBytes(tensor.shape, ElementSize(tensor.dtype), &expected)) {
      return BadTensor(
          path, tensor.name,
          absl::StrCat("shape ", tensor.ShapeString(), " is too large"));
    }
    if (expected != end - begin) {
      return BadTensor(
          path, tensor.name,
          absl::StrCat("data_offsets [", begin, ", ", end, "] hold ",
                       end - begin, " bytes, but shape ", tensor.ShapeString(),
                       " of ", tensor.dtype, " needs ", expected));
    }
    tensor.data = bytes + data_start + begin;
    tensor.size_bytes = end - begin;
    tensor.file = path;
    ranges.push_back({begin, end, tensors_.size()});
    tensors_.push_back(std::move(tensor));
  }

  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Empty tensors occupy no bytes and cannot overlap anything.
  const Range* previous = nullptr;
  for (const Range& range : ranges) {
    if (range.begin == range.end) continue;
    if (previous != nullptr && range.begin < previous->end) {
      return Corrupt(
          path,
          absl::StrCat("the bytes of tensors ", tensors_[previous->tensor].name,
                       " [", previous->begin, ", ", previous->end, ") and ",
                       tensors_[range.tensor].name, " [", range.begin, ", ",
                       range.end, ") overlap"));
    }
    previous = &range;
  }
  std::vector<SafetensorsTensor> ordered;
  ordered.reserve(ranges.size());
  for (const Range& range : ranges) {
    ordered.push_back(std::move(tensors_[range.tensor]));
  }
  tensors_ = std::move(ordered);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    index_[tensors_[i].name] = i;
  }
  return absl::OkStatus();
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) munmap(mapping_, size_);
}

const SafetensorsTensor* SafetensorsFile::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::unique_ptr<WeightStore>> WeightStore::Open(
    const std::string& model_dir) {
  std::unique_ptr<WeightStore> store(new WeightStore());
  const std::string index_path =
      JoinPath(model_dir, "model.safetensors.index.json");
  const std::string single_path = JoinPath(model_dir, "model.safetensors");
  // Tensor name -> shard file name, from the index.
  std::map<std::string, std::string> weight_map;
  std::set<std::string> file_names;
  if (PathExists(index_path)) {
    absl::StatusOr<std::string> text = ReadFile(index_path);
    if (!text.ok()) return text.status();
    absl::StatusOr<Json> index = ParseJson(*text, index_path);
    if (!index.ok()) return index.status();
    if (!index->is_object() || !index->contains("weight_map") ||
        !index->at("weight_map").is_object()) {
      return Corrupt(index_path, "no \"weight_map\" object");
    }
    for (auto it = index->at("weight_map").begin();
         it != index->at("weight_map").end(); ++it) {
      if (!it->is_string()) {
        return Corrupt(index_path, absl::StrCat("weight_map entry ", it.key(),
                                                " is not a file name"));
      }
      const std::string file_name = it->get<std::string>();
      if (file_name.empty() || file_name.find('/') != std::string::npos ||
          file_name == "." || file_name == "..") {
        return Corrupt(
            index_path,
            absl::StrCat("weight_map entry ", it.key(), ": \"", file_name,
                         "\" is not a file name in the folder"));
      }
      weight_map[it.key()] = file_name;
      file_names.insert(file_name);
    }
    if (file_names.empty()) return Corrupt(index_path, "empty weight_map");
  } else if (PathExists(single_path)) {
    file_names.insert("model.safetensors");
  } else {
    return absl::NotFoundError(absl::StrCat(
        model_dir, ": no model.safetensors or model.safetensors.index.json"));
  }

  std::map<std::string, const SafetensorsFile*> by_name;
  for (const std::string& file_name : file_names) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(JoinPath(model_dir, file_name));
    if (!file.ok()) return file.status();
    by_name[file_name] = file->get();
    for (const SafetensorsTensor& tensor : (*file)->tensors()) {
      auto [it, inserted] = store->tensors_.emplace(tensor.name, &tensor);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat(model_dir, ": tensor ", tensor.name, " is in both ",
                         it->second->file, " and ", tensor.file));
      }
    }
    store->files_.push_back(*std::move(file));
  }
  for (const auto& [name, file_name] : weight_map) {
    if (by_name.at(file_name)->Find(name) == nullptr) {
      return Corrupt(index_path,
                     absl::StrCat("weight_map places ", name, " in ", file_name,
                                  ", which has no such tensor"));
    }
  }
  return store;
}

const SafetensorsTensor* WeightStore::Find(absl::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<SafetensorsTensorSpec> specs,
    const std::map<std::string, std::string>& metadata) {
  std::unique_ptr<SafetensorsWriter> writer(new SafetensorsWriter());
  writer->path_ = path;
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const SafetensorsTensorSpec& spec : specs) {
    if (spec.name.empty() || spec.name.rfind("__", 0) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor name \"", spec.name,
                       "\" is empty or starts with __"));
    }
    if (header.contains(spec.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", spec.name, " is given twice"));
    }
    const uint64_t element_size = ElementSize(spec.dtype);
    if (element_size == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", spec.name, ": unknown dtype \"",
                       spec.dtype, "\""));
    }
    for (int64_t dim : spec.shape) {
      if (dim < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": tensor ", spec.name, ": shape ", ShapeToString(spec.shape),
            " has a negative dimension"));
      }
    }
    uint64_t bytes = 0;
    if (!NumBytes(spec.shape, element_size, &bytes) ||
        __builtin_add_overflow(offset, bytes, &offset)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", spec.name, ": shape ",
                       ShapeToString(spec.shape), " is too large"));
    }
    header[spec.name] = {{"dtype", spec.dtype},
                         {"shape", spec.shape},
                         {"data_offsets", {offset - bytes, offset}}};
    writer->sizes_.push_back(bytes);
  }
  writer->specs_ = std::move(specs);

  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) {
    prefix[i] = static_cast<char>((header_text.size() >> (8 * i)) & 0xff);
  }

  writer->temp_path_ = absl::StrCat(path, ".tmp.", getpid());
  writer->fd_ = open(writer->temp_path_.c_str(),
                     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (writer->fd_ < 0) return ErrnoToStatus(errno, writer->temp_path_);
  LONGCTX_RETURN_IF_ERROR(writer->WriteAll(prefix));
  LONGCTX_RETURN_IF_ERROR(writer->WriteAll(header_text));
  return writer;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) close(fd_);
  if (!finished_ && !temp_path_.empty()) unlink(temp_path_.c_str());
}

absl::Status SafetensorsWriter::WriteAll(absl::string_view bytes) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = write(fd_, p, std::min<size_t>(left, 1 << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, temp_path_);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::WriteNext(absl::string_view bytes) {
  if (finished_ || next_ >= specs_.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": every tensor is already written"));
  }
  if (bytes.size() != sizes_[next_]) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": tensor ", specs_[next_].name, ": got ", bytes.size(),
        " bytes, but shape ", ShapeToString(specs_[next_].shape), " of ",
        specs_[next_].dtype, " needs ", sizes_[next_]));
  }
  LONGCTX_RETURN_IF_ERROR(WriteAll(bytes));
  ++next_;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish() {
  if (finished_) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": already finished"));
  }
  if (next_ < specs_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": ", specs_.size() - next_,
        " tensors were not written, the first is ", specs_[next_].name));
  }
  const int fd = fd_;
  fd_ = -1;
  if (close(fd) != 0) return ErrnoToStatus(errno, temp_path_);
  if (rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return ErrnoToStatus(errno, path_);
  }
  finished_ = true;
  return absl::OkStatus();
}

absl::Status WriteSafetensors(
    const std::string& path, absl::Span<const SafetensorsTensorData> tensors,
    const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsTensorSpec> specs;
  specs.reserve(tensors.size());
  for (const SafetensorsTensorData& tensor : tensors) {
    specs.push_back(tensor.spec);
  }
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(path, std::move(specs), metadata);
  if (!writer.ok()) return writer.status();
  for (const SafetensorsTensorData& tensor : tensors) {
    LONGCTX_RETURN_IF_ERROR((*writer)->WriteNext(tensor.bytes));
  }
  return (*writer)->Finish();
}

}  // namespace longctx
