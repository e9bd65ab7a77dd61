// BlockPlacer: where a group's new KV blocks live (which rank, which of its
// block ids); used by the group's leader.
#ifndef LONGCTX_PARALLEL_BLOCK_PLACER_H_
#define LONGCTX_PARALLEL_BLOCK_PLACER_H_

#include <vector>

#include "absl/status/statusor.h"

namespace longctx {

// BlockPlacer decides where a group's new KV blocks live: which rank holds
// each one and its block id in that rank's pool. Used by the leader only.
class BlockPlacer {
 public:
  struct Place {
    int rank = 0;
    int local = 0;
  };

  // Every rank has `blocks_per_rank` blocks.
  BlockPlacer(int ranks, int blocks_per_rank);

  int ranks() const { return static_cast<int>(free_.size()); }
  int free_blocks(int rank) const {
    return static_cast<int>(free_[rank].size());
  }
  int total_free() const;

  // PlaceBlocks places `count` new consecutive blocks of one sequence. Two or
  // more are dealt zig-zag (cut into 2P nearly equal chunks, rank r takes
  // chunks r and 2P-1-r: causal work is balanced); a single block goes to the
  // rank with the most free room, so a group's context grows with P. A rank
  // that is full hands its share to the rank with the most room.
  // RESOURCE_EXHAUSTED when fewer than `count` blocks are free in the group
  // (nothing is placed then).
  absl::StatusOr<std::vector<Place>> PlaceBlocks(int count);

  // Release returns a block to its rank.
  void Release(const Place& place);

 private:
  int MostFree() const;

  std::vector<std::vector<int>> free_;  // Per rank: stack of free ids.
};

}  // namespace longctx

#endif  // LONGCTX_PARALLEL_BLOCK_PLACER_H_
