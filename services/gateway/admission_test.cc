#include "services/gateway/admission.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

TEST(AdmissionTest, BoundsEachTenantAndTheWhole) {
  AdmissionLimits limits;
  limits.max_concurrent = 5;
  limits.max_concurrent_per_tenant = 2;
  Admission admission(limits);
  std::vector<Admission::Slot> slots;
  for (int i = 0; i < 2; ++i) slots.push_back(*admission.Admit("acme"));
  absl::StatusOr<Admission::Slot> third = admission.Admit("acme");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("tenant acme"));
  EXPECT_THAT(third.status().message(),
              HasSubstr("--max_concurrent_requests_per_tenant"));
  // Another tenant still gets in, up to the global limit.
  for (int i = 0; i < 2; ++i) slots.push_back(*admission.Admit("globex"));
  slots.push_back(*admission.Admit("initech"));
  EXPECT_EQ(admission.in_flight(), 5);
  absl::StatusOr<Admission::Slot> full = admission.Admit("hooli");
  ASSERT_FALSE(full.ok());
  EXPECT_THAT(full.status().message(), HasSubstr("--max_concurrent_requests)"));
  // Releasing a slot frees it for its tenant and for the whole.
  slots.erase(slots.begin());
  EXPECT_EQ(admission.in_flight(), 4);
  EXPECT_TRUE(admission.Admit("acme").ok());  // Freed again at once.
  EXPECT_EQ(admission.in_flight(), 4);
}

TEST(AdmissionTest, TheAnonymousTenantHasOnlyTheGlobalLimit) {
  AdmissionLimits limits;
  limits.max_concurrent = 3;
  limits.max_concurrent_per_tenant = 1;
  Admission admission(limits);
  std::vector<Admission::Slot> slots;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Admission::Slot> slot = admission.Admit("");
    ASSERT_TRUE(slot.ok()) << slot.status();
    slots.push_back(*std::move(slot));
  }
  EXPECT_FALSE(admission.Admit("").ok());
}

TEST(AdmissionTest, MovedSlotsReleaseOnce) {
  AdmissionLimits limits;
  limits.max_concurrent = 1;
  Admission admission(limits);
  {
    Admission::Slot a = *admission.Admit("t");
    Admission::Slot b = std::move(a);
    Admission::Slot c;
    c = std::move(b);
    EXPECT_EQ(admission.in_flight(), 1);
    c.Release();
    c.Release();
    EXPECT_EQ(admission.in_flight(), 0);
  }
  EXPECT_EQ(admission.in_flight(), 0);
  EXPECT_TRUE(admission.Admit("t").ok());
}

}  // namespace
}  // namespace longctx
