#include "memory_store/memory_store_service_impl.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/support/slice.h"
#include "memory_store/get_response_wire.h"
#include "services/common/refused_reactors.h"
#include "services/common/status_util.h"

namespace longctx {
namespace {

using memory_store::v1::GetRequest;
using memory_store::v1::PutRequest;
using memory_store::v1::PutResponse;

// PutReactor collects one block's parts from the stream, then writes them in
// one atomic batch. Nothing is stored unless the whole stream arrives and is
// valid.
class PutReactor : public grpc::ServerReadReactor<PutRequest> {
 public:
  PutReactor(BlockStore* store, const MemoryStoreServiceOptions& options,
             MemoryStoreServiceImpl::Counters counters, PutResponse* response)
      : store_(store),
        options_(options),
        counters_(counters),
        response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // The client closed its side: the block is complete.
      Finish(ToGrpcStatus(Store()));
      return;
    }
    absl::Status status = Accept();
    if (!status.ok()) {
      Finish(ToGrpcStatus(status));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Accept() {
    if (request_.has_header()) {
      if (!key_.empty()) {
        return absl::InvalidArgumentError("Put stream has a second header");
      }
      const auto& header = request_.header();
      if (header.key().size() != BlockStore::kKeySize) {
        return absl::InvalidArgumentError(
            absl::StrCat("header.key has ", header.key().size(),
                         " bytes; expected ", BlockStore::kKeySize));
      }
      if (header.num_parts() < 1 ||
          header.num_parts() > BlockStore::kMaxParts) {
        return absl::InvalidArgumentError(
            absl::StrCat("header.num_parts is ", header.num_parts(),
                         "; expected 1 to ", BlockStore::kMaxParts));
      }
      key_ = header.key();
      parts_.resize(1);
      num_parts_ = header.num_parts();
      return absl::OkStatus();
    }
    if (!request_.has_chunk()) {
      return absl::InvalidArgumentError(
          "Put message has neither header nor chunk");
    }
    if (key_.empty()) {
      return absl::InvalidArgumentError("Put stream must start with a header");
    }
    const auto& chunk = request_.chunk();
    const int current = static_cast<int>(parts_.size()) - 1;
    if (chunk.part() == current + 1 && chunk.part() < num_parts_) {
      parts_.emplace_back();
    } else if (chunk.part() != current) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk.part is ", chunk.part(), "; expected ", current, " or ",
          current + 1, " (parts arrive in order, < ", num_parts_, ")"));
    }
    total_bytes_ += static_cast<int64_t>(chunk.data().size());
    if (total_bytes_ > options_.max_block_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("block exceeds ", options_.max_block_bytes,
                       " bytes (--max_block_bytes)"));
    }
    parts_.back().append(chunk.data());
    return absl::OkStatus();
  }

  absl::Status Store() {
    if (key_.empty()) {
      return absl::InvalidArgumentError("Put stream ended without a header");
    }
    if (static_cast<int>(parts_.size()) != num_parts_) {
      return absl::InvalidArgumentError(absl::StrCat("Put stream ended after ",
                                                     parts_.size(), " of ",
                                                     num_parts_, " parts"));
    }
    const int64_t evictions_before = store_->Stats().evictions;
    bool written = false;
    absl::Status status = store_->Put(key_, parts_, &written);
    if (absl::IsAlreadyExists(status)) counters_.put_conflicts->Increment();
    if (!status.ok()) return status;
    response_->set_bytes(total_bytes_);
    response_->set_already_stored(!written);
    if (!written) return absl::OkStatus();
    counters_.blocks_written->Increment();
    counters_.bytes_written->Increment(static_cast<double>(total_bytes_));
    BlockStoreStats stats = store_->Stats();
    counters_.blocks->Set(static_cast<double>(stats.blocks));
    counters_.bytes->Set(static_cast<double>(stats.bytes));
    if (stats.evictions > evictions_before) {
      counters_.evictions->Increment(
          static_cast<double>(stats.evictions - evictions_before));
    }
    return absl::OkStatus();
  }

  BlockStore* const store_;
  const MemoryStoreServiceOptions options_;
  const MemoryStoreServiceImpl::Counters counters_;
  PutResponse* const response_;
  PutRequest request_;
  std::string key_;
  int num_parts_ = 0;
  std::vector<std::string> parts_;
  int64_t total_bytes_ = 0;
};

// GetReactor streams the requested parts, reading each part when its turn comes
// and sending it in chunks, one write in flight at a time (gRPC's flow
// control). A chunk is a few bytes of GetResponse fields and a slice that
// references the part's value: the bytes reach the socket without a copy.
class GetReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GetReactor(BlockStore* store, const MemoryStoreServiceOptions& options,
             MemoryStoreServiceImpl::Counters counters,
             const grpc::ByteBuffer* raw_request)
      : store_(store), options_(options), counters_(counters) {
    GetRequest request;
    grpc::ByteBuffer copy(*raw_request);  // Shares the slices.
    if (!grpc::SerializationTraits<GetRequest>::Deserialize(&copy, &request)
             .ok()) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "GetRequest does not parse"));
      return;
    }
    absl::StatusOr<int> num_parts = store_->NumParts(request.key());
    if (!num_parts.ok()) {
      if (absl::IsNotFound(num_parts.status()))
        counters_.read_misses->Increment();
      Finish(ToGrpcStatus(num_parts.status()));
      return;
    }
    num_parts_ = *num_parts;
    key_ = request.key();
    if (request.parts().empty()) {
      for (int i = 0; i < num_parts_; ++i) parts_.push_back(i);
    } else {
      for (int part : request.parts()) {
        if (part < 0 || part >= num_parts_) {
          Finish(ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
              "parts has ", part, "; the block has ", num_parts_, " parts"))));
          return;
        }
        parts_.push_back(part);
      }
    }
    counters_.blocks_read->Increment();
    Next();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {  // The client went away.
      Finish(grpc::Status::CANCELLED);
      return;
    }
    Next();
  }

  void OnDone() override { delete this; }

 private:
  // Releases a chunk's reference to its part's value once gRPC has sent it.
  static void Unref(void* value) {
    delete static_cast<std::shared_ptr<const std::string>*>(value);
  }

  void Next() {
    if (value_ == nullptr || (offset_ >= value_->size() && sent_part_end_)) {
      if (next_part_ >= parts_.size()) {
        Finish(grpc::Status::OK);
        return;
      }
      auto value = std::make_shared<std::string>();
      absl::Status status =
          store_->GetPart(key_, parts_[next_part_], value.get());
      if (!status.ok()) {
        Finish(ToGrpcStatus(status));
        return;
      }
      counters_.bytes_read->Increment(static_cast<double>(value->size()));
      value_ = std::move(value);
      part_ = parts_[next_part_++];
      offset_ = 0;
      sent_part_end_ = false;
    }
    const size_t n = std::min(value_->size() - offset_,
                              static_cast<size_t>(options_.chunk_bytes));
    sent_part_end_ = offset_ + n >= value_->size();
    const std::string prefix =
        EncodeGetResponsePrefix(num_parts_, part_, sent_part_end_, n);
    grpc::Slice slices[2] = {grpc::Slice(prefix), grpc::Slice()};
    size_t num_slices = 1;
    if (n > 0) {
      slices[num_slices++] =
          grpc::Slice(const_cast<char*>(value_->data()) + offset_, n, &Unref,
                      new std::shared_ptr<const std::string>(value_));
    }
    offset_ += n;
    response_ = grpc::ByteBuffer(slices, num_slices);
    StartWrite(&response_);
  }

  BlockStore* const store_;
  const MemoryStoreServiceOptions options_;
  const MemoryStoreServiceImpl::Counters counters_;
  std::string key_;
  int num_parts_ = 0;
  std::vector<int> parts_;
  size_t next_part_ = 0;
  int part_ = 0;
  // The part being sent, shared with the slices gRPC still holds.
  std::shared_ptr<const std::string> value_;
  size_t offset_ = 0;
  bool sent_part_end_ = true;
  grpc::ByteBuffer response_;
};

// The keys of a Contains or Delete call, at most `limit` of them.
absl::StatusOr<std::vector<std::string>> KeysOf(
    const google::protobuf::RepeatedPtrField<std::string>& keys, int limit) {
  if (keys.size() > limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "keys has ", keys.size(), " entries; the limit is ", limit));
  }
  return std::vector<std::string>(keys.begin(), keys.end());
}

prometheus::Counter* NewCounter(prometheus::Registry& registry,
                                const std::string& name,
                                const std::string& help) {
  return &prometheus::BuildCounter()
              .Name(name)
              .Help(help)
              .Register(registry)
              .Add({});
}

prometheus::Gauge* NewGauge(prometheus::Registry& registry,
                            const std::string& name, const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(
      {});
}

}  // namespace

MemoryStoreServiceImpl::MemoryStoreServiceImpl(
    BlockStore* store, const MemoryStoreServiceOptions& options,
    prometheus::Registry& registry)
    : store_(store), options_(options) {
  counters_.blocks_written =
      NewCounter(registry, "longctx_store_blocks_written_total",
                 "KV blocks stored by Put.");
  counters_.bytes_written =
      NewCounter(registry, "longctx_store_written_bytes_total",
                 "Bytes of KV blocks stored by Put.");
  counters_.blocks_read = NewCounter(
      registry, "longctx_store_blocks_read_total", "KV blocks read by Get.");
  counters_.bytes_read = NewCounter(registry, "longctx_store_read_bytes_total",
                                    "Bytes of KV blocks read by Get.");
  counters_.read_misses =
      NewCounter(registry, "longctx_store_read_misses_total",
                 "Get calls for a block that is not stored.");
  counters_.put_conflicts = NewCounter(
      registry, "longctx_store_put_conflicts_total",
      "Puts refused because another block is stored under their key (a "
      "stored block is never replaced).");
  counters_.evictions =
      NewCounter(registry, "longctx_store_evictions_total",
                 "KV blocks evicted to keep the store under --max_bytes.");
  counters_.blocks =
      NewGauge(registry, "longctx_store_blocks", "KV blocks in the store.");
  counters_.bytes = NewGauge(registry, "longctx_store_size_bytes",
                             "Bytes of the KV blocks in the store.");
  UpdateGauges();
}

void MemoryStoreServiceImpl::UpdateGauges() {
  BlockStoreStats stats = store_->Stats();
  counters_.blocks->Set(static_cast<double>(stats.blocks));
  counters_.bytes->Set(static_cast<double>(stats.bytes));
}

grpc::ServerReadReactor<PutRequest>* MemoryStoreServiceImpl::Put(
    grpc::CallbackServerContext* context, PutResponse* response) {
  grpc::Status auth = options_.auth.Check(*context, "memory_store");
  if (!auth.ok()) return new RefusedReadReactor<PutRequest>(auth);
  return new PutReactor(store_, options_, counters_, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* MemoryStoreServiceImpl::Get(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  grpc::Status auth = options_.auth.Check(*context, "memory_store");
  if (!auth.ok()) return new RefusedWriteReactor<grpc::ByteBuffer>(auth);
  return new GetReactor(store_, options_, counters_, request);
}

grpc::ServerUnaryReactor* MemoryStoreServiceImpl::Contains(
    grpc::CallbackServerContext* context,
    const memory_store::v1::ContainsRequest* request,
    memory_store::v1::ContainsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status auth = options_.auth.Check(*context, "memory_store");
  if (!auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  absl::StatusOr<std::vector<std::string>> keys =
      KeysOf(request->keys(), options_.max_keys_per_call);
  if (!keys.ok()) {
    reactor->Finish(ToGrpcStatus(keys.status()));
    return reactor;
  }
  std::vector<bool> present = store_->Contains(*keys);
  for (bool p : present) response->add_present(p);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* MemoryStoreServiceImpl::Delete(
    grpc::CallbackServerContext* context,
    const memory_store::v1::DeleteRequest* request,
    memory_store::v1::DeleteResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status auth = options_.auth.Check(*context, "memory_store");
  if (!auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  absl::StatusOr<std::vector<std::string>> keys =
      KeysOf(request->keys(), options_.max_keys_per_call);
  if (!keys.ok()) {
    reactor->Finish(ToGrpcStatus(keys.status()));
    return reactor;
  }
  absl::StatusOr<int64_t> deleted = store_->Delete(*keys);
  if (deleted.ok()) {
    response->set_deleted(*deleted);
    UpdateGauges();
  }
  reactor->Finish(ToGrpcStatus(deleted.status()));
  return reactor;
}

grpc::ServerUnaryReactor* MemoryStoreServiceImpl::GetStats(
    grpc::CallbackServerContext* context,
    const memory_store::v1::GetStatsRequest* /*request*/,
    memory_store::v1::StoreStats* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status auth = options_.auth.Check(*context, "memory_store");
  if (!auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  BlockStoreStats stats = store_->Stats();
  response->set_blocks(stats.blocks);
  response->set_bytes(stats.bytes);
  response->set_budget_bytes(static_cast<int64_t>(store_->options().max_bytes));
  response->set_evictions(stats.evictions);
  response->set_put_conflicts(stats.put_conflicts);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace longctx
