#include "memory_store/store_client.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "kvblock/hash128.h"
#include "memory_store/get_response_wire.h"
#include "memory_store/local_read_protocol.h"
#include "services/common/logging.h"
#include "services/common/status_util.h"

namespace longctx {
namespace {

using memory_store::v1::GetRequest;
using memory_store::v1::MemoryStore;
using memory_store::v1::PutRequest;
using memory_store::v1::PutResponse;

bool IsRetryable(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

// Prefixes a shard's error with its address so a caller can tell which of N
// shards failed.
absl::Status FromShard(const std::string& name, const grpc::Status& status) {
  absl::Status converted = FromGrpcStatus(status);
  if (converted.ok()) return converted;
  return absl::Status(
      converted.code(),
      absl::StrCat("memory_store shard ", name, ": ", converted.message()));
}

absl::Status CheckKey(absl::string_view key) {
  if (key.size() != StoreClient::kKeySize) {
    return absl::InvalidArgumentError(absl::StrCat("block key has ", key.size(),
                                                   " bytes; expected ",
                                                   StoreClient::kKeySize));
  }
  return absl::OkStatus();
}

// Runs `attempt` once and then again up to `retries` times while it fails
// with a transient status.
template <typename Attempt>
absl::Status WithRetries(int retries, Attempt attempt) {
  absl::Status status = attempt();
  for (int i = 0; i < retries && IsRetryable(status); ++i) status = attempt();
  return status;
}

}  // namespace

StoreClient::StoreClient(const StoreClientOptions& options)
    : options_(options) {}

absl::StatusOr<std::unique_ptr<StoreClient>> StoreClient::Create(
    const std::vector<HostPort>& shards, const StoreClientOptions& options) {
  if (shards.empty()) {
    return absl::InvalidArgumentError("memory_store shard list is empty");
  }
  if (options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "call_timeout is ", absl::FormatDuration(options.call_timeout),
        "; it must be positive"));
  }
  if (options.chunk_bytes == 0) {
    return absl::InvalidArgumentError("chunk_bytes must be positive");
  }
  if (options.max_block_bytes <= 0) {
    return absl::InvalidArgumentError("max_block_bytes must be positive");
  }
  if (options.max_retries < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_retries is ", options.max_retries, "; it must be >= 0"));
  }
  if (!options.local_sockets.empty() &&
      options.local_sockets.size() != shards.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.local_sockets.size(), " local sockets for ", shards.size(),
        " memory_store shards: give one per shard (\"\" for none)"));
  }
  if (options.max_idle_local_connections < 0) {
    return absl::InvalidArgumentError(
        "max_idle_local_connections must be >= 0");
  }
  std::unique_ptr<StoreClient> client(new StoreClient(options));
  absl::flat_hash_set<std::string> seen;
  grpc::ChannelArguments args;
  // A shard that comes back should serve again within about a second, not
  // after gRPC's default reconnect backoff of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  for (const HostPort& address : shards) {
    Shard shard;
    shard.address = address;
    shard.name = address.ToString();
    if (!seen.insert(shard.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("memory_store shard ", shard.name, " is listed twice"));
    }
    const Hash128 seed = ComputeHash128(shard.name);
    shard.weight_seed = seed.lo ^ seed.hi;
    shard.channel = options.channel_security.NewChannel(shard.name, args);
    shard.stub = MemoryStore::NewStub(shard.channel);
    const size_t index = client->shards_.size();
    if (index < options.local_sockets.size() &&
        !options.local_sockets[index].empty()) {
      shard.local = std::make_unique<LocalSocket>();
      shard.local->path = options.local_sockets[index];
    }
    client->shards_.push_back(std::move(shard));
  }
  return client;
}

int StoreClient::ShardOf(absl::string_view key) const {
  // Highest random weight: the shard whose (key, shard) hash is largest.
  int best = 0;
  Hash128 best_weight;
  for (int i = 0; i < num_shards(); ++i) {
    const Hash128 weight =
        ComputeHash128(key.data(), key.size(), shards_[i].weight_seed);
    if (i == 0 || best_weight < weight) {
      best = i;
      best_weight = weight;
    }
  }
  return best;
}

std::chrono::system_clock::time_point StoreClient::Deadline() const {
  return std::chrono::system_clock::now() +
         absl::ToChronoNanoseconds(options_.call_timeout);
}

absl::Status StoreClient::Put(absl::string_view key,
                              absl::Span<const std::string> parts) {
  absl::Status status = CheckKey(key);
  if (!status.ok()) return status;
  if (parts.empty()) {
    return absl::InvalidArgumentError("a block needs at least one part");
  }
  Shard& shard = shards_[ShardOf(key)];
  return WithRetries(options_.max_retries,
                     [&] { return PutOnce(shard, key, parts); });
}

absl::Status StoreClient::PutOnce(Shard& shard, absl::string_view key,
                                  absl::Span<const std::string> parts) {
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  PutResponse response;
  std::unique_ptr<grpc::ClientWriter<PutRequest>> writer =
      shard.stub->Put(&context, &response);
  PutRequest request;
  request.mutable_header()->set_key(key.data(), key.size());
  request.mutable_header()->set_num_parts(static_cast<int>(parts.size()));
  bool open = writer->Write(request);
  for (size_t p = 0; open && p < parts.size(); ++p) {
    // Every part is sent as at least one chunk, so empty parts exist too.
    size_t offset = 0;
    do {
      const size_t n = std::min(options_.chunk_bytes, parts[p].size() - offset);
      request.Clear();
      request.mutable_chunk()->set_part(static_cast<int>(p));
      request.mutable_chunk()->set_data(parts[p].data() + offset, n);
      offset += n;
      open = writer->Write(request);
    } while (open && offset < parts[p].size());
  }
  // A failed Write means the stream is broken; Finish says why.
  if (open) writer->WritesDone();
  return FromShard(shard.name, writer->Finish());
}

std::vector<absl::Span<const absl::string_view>> StoredBlock::Parts() const {
  return std::vector<absl::Span<const absl::string_view>>(parts_.begin(),
                                                          parts_.end());
}

std::string StoredBlock::PartString(size_t i) const {
  std::string joined;
  for (absl::string_view piece : parts_[i]) {
    joined.append(piece.data(), piece.size());
  }
  return joined;
}

absl::StatusOr<std::vector<std::string>> StoreClient::Get(
    absl::string_view key, absl::Span<const int> parts_wanted) {
  absl::StatusOr<StoredBlock> block = Read(key, parts_wanted);
  if (!block.ok()) return block.status();
  std::vector<std::string> parts;
  parts.reserve(block->num_parts());
  for (size_t i = 0; i < block->num_parts(); ++i) {
    parts.push_back(block->PartString(i));
  }
  return parts;
}

absl::StatusOr<StoredBlock> StoreClient::Read(
    absl::string_view key, absl::Span<const int> parts_wanted) {
  absl::Status status = CheckKey(key);
  if (!status.ok()) return status;
  Shard& shard = shards_[ShardOf(key)];
  StoredBlock block;
  if (shard.local != nullptr && parts_wanted.empty()) {
    status = ReadLocal(*shard.local, key, [&](uint32_t part, uint64_t length) {
      if (part == 0) block = StoredBlock();  // A retry starts over.
      // Not zero-filled: the socket writes every byte.
      block.owned_.emplace_back(new char[length > 0 ? length : 1]);
      char* data = block.owned_.back().get();
      block.parts_.push_back({absl::string_view(data, length)});
      block.size_ += length;
      return absl::StatusOr<char*>(data);
    });
    if (status.ok()) return block;
    if (!FallBackToGrpc(shard, status)) return status;
    block = StoredBlock();
  }
  status = WithRetries(options_.max_retries, [&] {
    return ReadOnce(shard, key, parts_wanted, &block);
  });
  if (!status.ok()) return status;
  return block;
}

absl::Status StoreClient::ReadInto(absl::string_view key, std::string* head,
                                   absl::Span<char> rest) {
  absl::Status status = CheckKey(key);
  if (!status.ok()) return status;
  Shard& shard = shards_[ShardOf(key)];
  auto too_large = [&](uint64_t at) {
    return absl::DataLossError(
        absl::StrCat("memory_store ", shard.name,
                     ": the block's parts after its first "
                     "take ",
                     at, " bytes or more; expected ", rest.size()));
  };
  if (shard.local != nullptr) {
    size_t filled = 0;
    status =
        ReadLocal(*shard.local, key,
                  [&](uint32_t part, uint64_t length) -> absl::StatusOr<char*> {
                    if (part == 0) {  // A retry starts over too.
                      filled = 0;
                      head->resize(length);
                      return head->data();
                    }
                    if (length > rest.size() - filled) {
                      return too_large(filled + length);
                    }
                    char* at = rest.data() + filled;
                    filled += length;
                    return at;
                  });
    if (status.ok() && filled != rest.size()) {
      status = absl::DataLossError(absl::StrCat("memory_store ", shard.name,
                                                ": the block's parts after "
                                                "its first have ",
                                                filled, " bytes; expected ",
                                                rest.size()));
    }
    if (!FallBackToGrpc(shard, status)) return status;
  }
  // Over gRPC (Read would try the socket first again).
  StoredBlock block;
  status = WithRetries(options_.max_retries,
                       [&] { return ReadOnce(shard, key, {}, &block); });
  if (!status.ok()) return status;
  *head = block.PartString(0);
  size_t filled = 0;
  for (size_t p = 1; p < block.num_parts(); ++p) {
    for (absl::string_view piece : block.part(p)) {
      if (piece.size() > rest.size() - filled) {
        return too_large(filled + piece.size());
      }
      std::memcpy(rest.data() + filled, piece.data(), piece.size());
      filled += piece.size();
    }
  }
  if (filled != rest.size()) return too_large(filled);
  return absl::OkStatus();
}

bool StoreClient::FallBackToGrpc(Shard& shard, const absl::Status& status) {
  if (!absl::IsUnavailable(status) && !absl::IsDeadlineExceeded(status)) {
    return false;
  }
  absl::MutexLock lock(&shard.local->mu);
  if (!shard.local->warned) {
    shard.local->warned = true;
    Log(LogLevel::kWarning,
        "memory_store %s: reading over gRPC, the local socket failed: %s "
        "(said once)",
        shard.name, status.message());
  }
  return true;
}

StoreClient::LocalSocket::~LocalSocket() {
  absl::MutexLock lock(&mu);
  for (int fd : idle) close(fd);
}

absl::Status StoreClient::ReadLocal(LocalSocket& local, absl::string_view key,
                                    const PartSink& sink) {
  absl::Status status;
  // An idle connection may have outlived the store's process: one more try
  // on a new connection then.
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = -1;
    {
      absl::MutexLock lock(&local.mu);
      if (!local.idle.empty()) {
        fd = local.idle.back();
        local.idle.pop_back();
      }
    }
    const bool reused = fd >= 0;
    if (!reused) {
      absl::StatusOr<int> connected =
          ConnectLocal(local.path, options_.call_timeout);
      if (!connected.ok()) return connected.status();
      fd = *connected;
    }
    status = ReadLocalOn(fd, local.path, key, sink);
    // After anything but a whole answer the connection's state is unknown.
    if (status.ok() || absl::IsNotFound(status)) {
      absl::MutexLock lock(&local.mu);
      if (static_cast<int>(local.idle.size()) <
          options_.max_idle_local_connections) {
        local.idle.push_back(fd);
        fd = -1;
      }
    }
    if (fd >= 0) close(fd);
    if (!reused || !absl::IsUnavailable(status)) break;
  }
  return status;
}

absl::Status StoreClient::ReadLocalOn(int fd, const std::string& path,
                                      absl::string_view key,
                                      const PartSink& sink) {
  const absl::Time deadline = absl::Now() + options_.call_timeout;
  const std::string what = absl::StrCat("memory_store local socket ", path);
  const char* w = what.c_str();
  char request[8];
  PutU32(request, kLocalRequestMagic);
  PutU32(request + 4, static_cast<uint32_t>(key.size()));
  absl::Status status = SendAll(fd, request, sizeof(request), w, deadline);
  if (status.ok()) status = SendAll(fd, key.data(), key.size(), w, deadline);
  char head[8];
  if (status.ok()) status = RecvAll(fd, head, sizeof(head), w, deadline);
  if (!status.ok()) return status;
  const uint32_t num_parts = GetU32(head + 4);
  if (GetU32(head) != kLocalResponseMagic || num_parts == 0 ||
      num_parts > kMaxLocalParts) {
    return absl::DataLossError(
        absl::StrCat(what, ": not a response of the local read protocol"));
  }
  int64_t received = 0;
  for (uint32_t part = 0; part < num_parts; ++part) {
    char frame[12];
    status = RecvAll(fd, frame, sizeof(frame), w, deadline);
    if (!status.ok()) return status;
    const uint32_t code = GetU32(frame);
    const uint64_t length = GetU64(frame + 4);
    if (code != 0) {
      if (code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated) ||
          length > kMaxLocalMessageBytes) {
        return absl::DataLossError(
            absl::StrCat(what, ": a malformed error in part ", part));
      }
      std::string message(length, '\0');
      status = RecvAll(fd, message.data(), message.size(), w, deadline);
      if (!status.ok()) return status;
      return absl::Status(static_cast<absl::StatusCode>(code),
                          absl::StrCat(path, ": ", message));
    }
    // The limit binds before anything is allocated.
    if (length > static_cast<uint64_t>(options_.max_block_bytes - received)) {
      return absl::DataLossError(
          absl::StrCat(what, ": the block is larger than max_block_bytes (",
                       options_.max_block_bytes, ")"));
    }
    received += static_cast<int64_t>(length);
    absl::StatusOr<char*> data = sink(part, length);
    if (!data.ok()) return data.status();
    status = RecvAll(fd, *data, length, w, deadline);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status StoreClient::ReadOnce(Shard& shard, absl::string_view key,
                                   absl::Span<const int> parts_wanted,
                                   StoredBlock* block) {
  *block = StoredBlock();
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  GetRequest request;
  request.set_key(key.data(), key.size());
  for (int part : parts_wanted) request.add_parts(part);
  // The generated stub would parse each GetResponse into a std::string (a
  // copy); the same call read as raw buffers leaves the bytes in place.
  static const std::string* const kGetMethod = new std::string(
      absl::StrCat("/", MemoryStore::service_full_name(), "/Get"));
  const grpc::internal::RpcMethod method(
      kGetMethod->c_str(), grpc::internal::RpcMethod::SERVER_STREAMING,
      shard.channel);
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
          shard.channel.get(), method, &context, request));
  grpc::ByteBuffer buffer;
  std::vector<grpc::Slice> slices;
  std::vector<absl::string_view> views;
  GetResponseView response;
  std::vector<absl::string_view> current;  // Pieces of an unfinished part.
  int num_parts = -1;
  bool in_order = true;
  absl::Status malformed;
  int64_t received = 0;
  while (reader->Read(&buffer)) {
    slices.clear();
    views.clear();
    if (!buffer.Dump(&slices).ok()) {
      malformed = absl::DataLossError("a GetResponse could not be read");
      break;
    }
    for (grpc::Slice& slice : slices) {
      block->slices_.push_back(std::make_unique<grpc::Slice>(std::move(slice)));
      const grpc::Slice& kept = *block->slices_.back();
      views.emplace_back(reinterpret_cast<const char*>(kept.begin()),
                         kept.size());
      received += static_cast<int64_t>(kept.size());
    }
    if (received > options_.max_block_bytes) {
      malformed = absl::DataLossError(
          absl::StrCat("the block is over max_block_bytes (",
                       options_.max_block_bytes, ")"));
      break;
    }
    malformed = ParseGetResponse(views, &response);
    if (!malformed.ok()) break;
    if (num_parts < 0) num_parts = response.num_parts;
    // The part this chunk should belong to, in the order asked.
    const size_t index = block->parts_.size();
    const int expected =
        parts_wanted.empty()
            ? static_cast<int>(index)
            : (index < parts_wanted.size() ? parts_wanted[index] : -1);
    if (response.part != expected) in_order = false;
    current.insert(current.end(), response.data.begin(), response.data.end());
    block->size_ += response.data_size;
    if (response.part_end) {
      block->parts_.push_back(std::move(current));
      current.clear();
    }
  }
  if (!malformed.ok()) {
    // Stop the stream before Finish, which would otherwise wait for it.
    context.TryCancel();
    (void)reader->Finish();
    return absl::DataLossError(absl::StrCat("memory_store shard ", shard.name,
                                            ": ", malformed.message()));
  }
  absl::Status status = FromShard(shard.name, reader->Finish());
  if (!status.ok()) return status;
  const size_t wanted = parts_wanted.empty()
                            ? static_cast<size_t>(std::max(num_parts, 0))
                            : parts_wanted.size();
  if (!in_order || !current.empty() || block->parts_.size() != wanted ||
      num_parts < 0) {
    return absl::DataLossError(
        absl::StrCat("memory_store shard ", shard.name, " sent ",
                     block->parts_.size(), " whole parts",
                     in_order ? "" : " out of order", "; expected ", wanted));
  }
  return absl::OkStatus();
}

template <typename Call>
void StoreClient::FanOut(absl::Span<const std::string> keys, Call call) {
  std::vector<std::vector<size_t>> by_shard(shards_.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    by_shard[ShardOf(keys[i])].push_back(i);
  }
  // One thread per further shard with keys; the calling thread takes the
  // first. Threads are joined before returning.
  std::vector<std::thread> threads;
  int first = -1;
  for (int s = 0; s < num_shards(); ++s) {
    if (by_shard[s].empty()) continue;
    if (first < 0) {
      first = s;
      continue;
    }
    threads.emplace_back([&, s] { call(shards_[s], by_shard[s]); });
  }
  if (first >= 0) call(shards_[first], by_shard[first]);
  for (std::thread& thread : threads) thread.join();
}

std::vector<bool> StoreClient::Contains(absl::Span<const std::string> keys) {
  // One byte per key: threads write distinct elements, which vector<bool>'s
  // packed bits would not allow.
  std::vector<uint8_t> present(keys.size(), 0);
  FanOut(keys, [&](Shard& shard, const std::vector<size_t>& indices) {
    for (size_t begin = 0; begin < indices.size(); begin += kMaxKeysPerCall) {
      const size_t end = std::min(indices.size(),
                                  begin + static_cast<size_t>(kMaxKeysPerCall));
      memory_store::v1::ContainsRequest request;
      for (size_t i = begin; i < end; ++i) {
        const std::string& key = keys[indices[i]];
        // A malformed key is never stored; sending it would fail the batch.
        request.add_keys(key.size() == kKeySize ? key
                                                : std::string(kKeySize, '\0'));
      }
      memory_store::v1::ContainsResponse response;
      absl::Status status = WithRetries(options_.max_retries, [&] {
        grpc::ClientContext context;
        context.set_deadline(Deadline());
        return FromShard(shard.name,
                         shard.stub->Contains(&context, request, &response));
      });
      if (!status.ok() ||
          response.present_size() != static_cast<int>(end - begin)) {
        continue;  // The shard's keys read as misses.
      }
      for (size_t i = begin; i < end; ++i) {
        present[indices[i]] = keys[indices[i]].size() == kKeySize &&
                              response.present(static_cast<int>(i - begin));
      }
    }
  });
  return std::vector<bool>(present.begin(), present.end());
}

absl::StatusOr<int64_t> StoreClient::Delete(
    absl::Span<const std::string> keys) {
  for (const std::string& key : keys) {
    absl::Status status = CheckKey(key);
    if (!status.ok()) return status;
  }
  std::vector<absl::Status> statuses(shards_.size());
  std::vector<int64_t> deleted(shards_.size(), 0);
  FanOut(keys, [&](Shard& shard, const std::vector<size_t>& indices) {
    const size_t s = &shard - shards_.data();
    for (size_t begin = 0; begin < indices.size(); begin += kMaxKeysPerCall) {
      const size_t end = std::min(indices.size(),
                                  begin + static_cast<size_t>(kMaxKeysPerCall));
      memory_store::v1::DeleteRequest request;
      for (size_t i = begin; i < end; ++i) request.add_keys(keys[indices[i]]);
      memory_store::v1::DeleteResponse response;
      absl::Status status = WithRetries(options_.max_retries, [&] {
        grpc::ClientContext context;
        context.set_deadline(Deadline());
        return FromShard(shard.name,
                         shard.stub->Delete(&context, request, &response));
      });
      if (!status.ok()) {
        statuses[s] = status;
        return;
      }
      deleted[s] += response.deleted();
    }
  });
  int64_t total = 0;
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (!statuses[s].ok()) return statuses[s];
    total += deleted[s];
  }
  return total;
}

}  // namespace longctx
