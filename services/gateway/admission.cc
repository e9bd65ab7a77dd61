#include "services/gateway/admission.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace longctx {

Admission::Slot& Admission::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    tenant_ = std::move(other.tenant_);
  }
  return *this;
}

void Admission::Slot::Release() {
  if (owner_ == nullptr) return;
  std::exchange(owner_, nullptr)->Free(tenant_);
}

absl::StatusOr<Admission::Slot> Admission::Admit(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  if (in_flight_ >= limits_.max_concurrent) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the gateway has ", in_flight_, " calls in flight; the limit is ",
        limits_.max_concurrent, " (--max_concurrent_requests)"));
  }
  const bool bounded = !tenant.empty() && limits_.max_concurrent_per_tenant > 0;
  if (bounded) {
    auto it = per_tenant_.find(tenant);
    const int mine = it == per_tenant_.end() ? 0 : it->second;
    if (mine >= limits_.max_concurrent_per_tenant) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "tenant ", tenant, " has ", mine, " calls in flight; the limit is ",
          limits_.max_concurrent_per_tenant,
          " (--max_concurrent_requests_per_tenant)"));
    }
    ++per_tenant_[tenant];
  }
  ++in_flight_;
  return Slot(this, bounded ? tenant : std::string());
}

void Admission::Free(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  --in_flight_;
  if (tenant.empty()) return;
  auto it = per_tenant_.find(tenant);
  if (it != per_tenant_.end() && --it->second == 0) per_tenant_.erase(it);
}

int Admission::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

}  // namespace longctx
