#include "parallel/communicator.h"

#include <cstring>
#include <vector>

namespace longctx {

absl::Status Communicator::Send(const void* data, size_t bytes, int peer,
                                uint64_t tag) {
  absl::StatusOr<std::unique_ptr<PendingOp>> op = Isend(data, bytes, peer, tag);
  if (!op.ok()) return op.status();
  return (*op)->Wait();
}

absl::Status Communicator::Recv(void* data, size_t bytes, int peer,
                                uint64_t tag) {
  absl::StatusOr<std::unique_ptr<PendingOp>> op = Irecv(data, bytes, peer, tag);
  if (!op.ok()) return op.status();
  return (*op)->Wait();
}

// The collectives below are built from point-to-point messages: groups are
// small (a handful of ranks), so a flat tree costs less than it saves in code.
absl::Status Communicator::Broadcast(void* data, size_t bytes, int root,
                                     uint64_t tag) {
  if (rank() != root) return Recv(data, bytes, root, tag);
  std::vector<std::unique_ptr<PendingOp>> ops;
  for (int peer = 0; peer < size(); ++peer) {
    if (peer == root) continue;
    absl::StatusOr<std::unique_ptr<PendingOp>> op =
        Isend(data, bytes, peer, tag);
    if (!op.ok()) return op.status();
    ops.push_back(*std::move(op));
  }
  for (auto& op : ops) {
    absl::Status status = op->Wait();
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status Communicator::Gather(const void* data, size_t bytes, void* out,
                                  int root, uint64_t tag) {
  if (rank() != root) return Send(data, bytes, root, tag);
  auto* base = static_cast<uint8_t*>(out);
  std::memcpy(base + static_cast<size_t>(root) * bytes, data, bytes);
  std::vector<std::unique_ptr<PendingOp>> ops;
  for (int peer = 0; peer < size(); ++peer) {
    if (peer == root) continue;
    absl::StatusOr<std::unique_ptr<PendingOp>> op =
        Irecv(base + static_cast<size_t>(peer) * bytes, bytes, peer, tag);
    if (!op.ok()) return op.status();
    ops.push_back(*std::move(op));
  }
  for (auto& op : ops) {
    absl::Status status = op->Wait();
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status Communicator::Barrier(uint64_t tag) {
  char token = 0;
  std::vector<char> all(static_cast<size_t>(size()));
  absl::Status status = Gather(&token, 1, all.data(), 0, tag);
  if (!status.ok()) return status;
  return Broadcast(&token, 1, 0, tag);
}

}  // namespace longctx
