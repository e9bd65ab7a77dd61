#include "parallel/block_placer.h"

#include "absl/strings/str_cat.h"

namespace longctx {

BlockPlacer::BlockPlacer(int ranks, int blocks_per_rank)
    : free_(static_cast<size_t>(ranks)) {
  for (auto& ids : free_) {
    for (int i = blocks_per_rank - 1; i >= 0; --i) ids.push_back(i);
  }
}

int BlockPlacer::total_free() const {
  int total = 0;
  for (const auto& ids : free_) total += static_cast<int>(ids.size());
  return total;
}

int BlockPlacer::MostFree() const {
  int best = 0;
  for (int r = 1; r < ranks(); ++r) {
    if (free_[r].size() > free_[best].size()) best = r;
  }
  return best;
}

absl::StatusOr<std::vector<BlockPlacer::Place>> BlockPlacer::PlaceBlocks(
    int count) {
  if (count > total_free()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the group's KV cache has ", total_free(),
                     " free blocks, ", count, " needed"));
  }
  const int P = ranks();
  std::vector<Place> places;
  places.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    int rank;
    if (count == 1) {
      rank = MostFree();
    } else {
      const int chunk = static_cast<int>(int64_t{i} * 2 * P / count);
      rank = chunk < P ? chunk : 2 * P - 1 - chunk;
      if (free_[rank].empty()) rank = MostFree();
    }
    places.push_back({rank, free_[rank].back()});
    free_[rank].pop_back();
  }
  return places;
}

void BlockPlacer::Release(const Place& place) {
  free_[place.rank].push_back(place.local);
}

}  // namespace longctx
