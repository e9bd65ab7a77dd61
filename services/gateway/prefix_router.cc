#include "services/gateway/prefix_router.h"

#include <algorithm>

namespace longctx {

PrefixRouter::PrefixRouter(size_t max_entries)
    : max_entries_(std::max<size_t>(max_entries, 1)) {}

PrefixRouter::Match PrefixRouter::Find(absl::Span<const BlockKey> keys) const {
  absl::MutexLock lock(&mu_);
  // From the longest prefix down: the first known key wins.
  for (size_t i = keys.size(); i > 0; --i) {
    auto it = entries_.find(keys[i - 1].key);
    if (it != entries_.end()) {
      return Match{it->second.group, static_cast<int>(i)};
    }
  }
  return Match();
}

void PrefixRouter::Remember(absl::Span<const BlockKey> keys, int group) {
  absl::MutexLock lock(&mu_);
  for (const BlockKey& id : keys) {
    const std::string& key = id.key;
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      it->second.group = group;
      recency_.splice(recency_.end(), recency_, it->second.at);
      continue;
    }
    entries_.emplace(key, Entry{group, recency_.insert(recency_.end(), key)});
    if (entries_.size() > max_entries_) {
      entries_.erase(recency_.front());
      recency_.pop_front();
    }
  }
}

size_t PrefixRouter::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace longctx
