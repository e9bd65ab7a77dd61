// PrefixRouter: the gateway's memory of which worker group computed which
// prompt prefix, so that a request over a document the gateway has seen goes
// to the group whose KV pool still holds that document's blocks.
//
// Prompts are named by their chained block keys (kvblock/block_keys):
// key i names the whole prefix up to the end of block i (within one cache
// namespace: a tenant's keys never match another's), so the longest key of
// a new prompt that the router knows names the group that was given the
// longest part of it. The answer is a preference, never a promise: the group
// may have evicted the blocks since, and the worker then restores or
// recomputes them.
#ifndef LONGCTX_SERVICES_GATEWAY_PREFIX_ROUTER_H_
#define LONGCTX_SERVICES_GATEWAY_PREFIX_ROUTER_H_

#include <cstddef>
#include <list>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "kvblock/block_keys.h"

namespace longctx {

// PrefixRouter is thread-safe.
class PrefixRouter {
 public:
  // Remembers at most `max_entries` keys (>= 1), forgetting the least recently
  // given one first.
  explicit PrefixRouter(size_t max_entries);

  // Match is the longest known prefix of a prompt.
  struct Match {
    int group = -1;  // -1: no key of the prompt is known.
    int blocks = 0;  // Leading blocks of the prompt that `group` was given.
  };

  // Find returns the group last given the longest prefix of `keys`.
  Match Find(absl::Span<const BlockKey> keys) const;

  // Remember records that `group` was given the prompt whose keys are `keys`.
  void Remember(absl::Span<const BlockKey> keys, int group);

  size_t size() const;

 private:
  struct Entry {
    int group;
    std::list<std::string>::iterator at;  // In recency_.
  };

  const size_t max_entries_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> recency_ ABSL_GUARDED_BY(mu_);  // Oldest first.
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_PREFIX_ROUTER_H_
