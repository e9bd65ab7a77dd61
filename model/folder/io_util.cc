#include "model/folder/io_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace longctx {

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return absl::StrCat(dir, name);
  return absl::StrCat(dir, "/", name);
}

bool PathExists(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

absl::Status ErrnoToStatus(int error_number, absl::string_view context) {
  const std::string message =
      absl::StrCat(context, ": ", std::strerror(error_number));
  switch (error_number) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:
      return absl::ResourceExhaustedError(message);
    case EISDIR:
    case EINVAL:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     size_t max_bytes) {
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
  if (S_ISDIR(info.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(path + ": is a folder, not a file");
  }
  auto too_large = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": is larger than ", max_bytes, " bytes, the most accepted"));
  };
  if (S_ISREG(info.st_mode) &&
      static_cast<uint64_t>(info.st_size) > max_bytes) {
    close(fd);
    return too_large();
  }
  std::string content;
  char chunk[1 << 16];
  while (true) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      close(fd);
      return ErrnoToStatus(error, path);
    }
    if (n == 0) break;
    content.append(chunk, static_cast<size_t>(n));
    if (content.size() > max_bytes) {  // A file that grew, or a pipe.
      close(fd);
      return too_large();
    }
  }
  close(fd);
  return content;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view content) {
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  const int fd =
      open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoToStatus(errno, temp);
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    const ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      close(fd);
      unlink(temp.c_str());
      return ErrnoToStatus(error, temp);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (close(fd) != 0) {
    const int error = errno;
    unlink(temp.c_str());
    return ErrnoToStatus(error, temp);
  }
  if (rename(temp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    unlink(temp.c_str());
    return ErrnoToStatus(error, path);
  }
  return absl::OkStatus();
}

namespace {

void AppendJsonForMessage(const nlohmann::json& value, int depth,
                          std::string* out) {
  constexpr int kMaxDepth = 3;
  constexpr size_t kMaxEntries = 8;
  constexpr size_t kMaxString = 64;
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (text.size() <= kMaxString) {
      absl::StrAppend(out, nlohmann::json(text).dump());
    } else {
      // Cut on a character boundary so that the message stays UTF-8.
      size_t cut = kMaxString;
      while (cut > 0 &&
             (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
        --cut;
      }
      absl::StrAppend(out, nlohmann::json(text.substr(0, cut)).dump(), "...");
    }
    return;
  }
  if (!value.is_structured()) {
    absl::StrAppend(out, value.dump());
    return;
  }
  const bool is_array = value.is_array();
  out->push_back(is_array ? '[' : '{');
  if (depth >= kMaxDepth && !value.empty()) {
    out->append("...");
  } else {
    size_t i = 0;
    for (auto it = value.begin(); it != value.end(); ++it, ++i) {
      if (i > 0) out->push_back(',');
      if (i == kMaxEntries) {
        out->append("...");
        break;
      }
      if (!is_array) {
        AppendJsonForMessage(nlohmann::json(it.key()), depth + 1, out);
        out->push_back(':');
      }
      AppendJsonForMessage(*it, depth + 1, out);
    }
  }
  out->push_back(is_array ? ']' : '}');
}

}  // namespace

std::string JsonForMessage(const nlohmann::json& value) {
  std::string out;
  AppendJsonForMessage(value, 0, &out);
  return out;
}

absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text,
                                         absl::string_view source) {
  // The throwing parser is used (and caught here) for its message, which
  // says where the text is broken.
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": malformed JSON: ", e.what()));
  }
}

}  // namespace longctx
