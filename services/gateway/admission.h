// Admission: how many calls the gateway works on at once, in all and per
// tenant, so one client cannot take every slot. Generate streams hold a slot
// from admission until they end; Tokenize calls hold one while they tokenize.
#ifndef LONGCTX_SERVICES_GATEWAY_ADMISSION_H_
#define LONGCTX_SERVICES_GATEWAY_ADMISSION_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace longctx {

// AdmissionLimits are the gateway's concurrency limits.
struct AdmissionLimits {
  // Calls at once (--max_concurrent_requests).
  int max_concurrent = 256;
  // Calls at once of one tenant (--max_concurrent_requests_per_tenant); 0:
  // only the global limit. Not applied to the tenant "" (a gateway without a
  // tokens file, where every client is one tenant).
  int max_concurrent_per_tenant = 64;
};

// Admission is thread-safe.
class Admission {
 public:
  explicit Admission(const AdmissionLimits& limits) : limits_(limits) {}

  // Slot is one admitted call; destroying it (or Release) frees the slot.
  // Movable.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept { *this = std::move(other); }
    Slot& operator=(Slot&& other) noexcept;
    ~Slot() { Release(); }
    void Release();

   private:
    friend class Admission;
    Slot(Admission* owner, std::string tenant)
        : owner_(owner), tenant_(std::move(tenant)) {}
    Admission* owner_ = nullptr;
    std::string tenant_;
  };

  // Admit takes a slot for `tenant`, or returns RESOURCE_EXHAUSTED naming the
  // limit (and the tenant) that is full.
  absl::StatusOr<Slot> Admit(const std::string& tenant);

  // Calls admitted and not yet released, in all.
  int in_flight() const;

 private:
  void Free(const std::string& tenant);

  const AdmissionLimits limits_;
  mutable absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, int> per_tenant_ ABSL_GUARDED_BY(mu_);
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_ADMISSION_H_
