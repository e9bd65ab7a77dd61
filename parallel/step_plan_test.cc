#include "parallel/step_plan.h"

#include <string>

#include "gtest/gtest.h"

namespace longctx {
namespace {

TEST(StepPlanTest, RoundTripsAndRejectsBadBytes) {
  StepPlan plan;
  plan.step = 42;
  PlanSpan span;
  span.start = 3;
  span.tokens = {5, 6, 7};
  span.want_logits = true;
  span.owner = {0};
  span.local = {9};
  plan.spans.push_back(span);
  plan.offloads.push_back(
      {1, 4, 256, {std::string(32, 'k'), std::string(32, 'K')}});
  plan.restores.push_back(
      {0, 2, 0, {std::string(32, 'r'), std::string(32, 'R')}});
  const std::string bytes = EncodeStepPlan(plan);
  auto back = DecodeStepPlan(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->step, 42u);
  ASSERT_EQ(back->spans.size(), 1u);
  EXPECT_EQ(back->spans[0].tokens, span.tokens);
  EXPECT_EQ(back->spans[0].local, span.local);
  EXPECT_TRUE(back->spans[0].want_logits);
  EXPECT_FALSE(back->spans[0].all_logits);
  ASSERT_EQ(back->offloads.size(), 1u);
  EXPECT_EQ(back->offloads[0].local, 4);
  EXPECT_EQ(back->offloads[0].token_count, 256);
  EXPECT_EQ(back->offloads[0].id.key, std::string(32, 'k'));
  EXPECT_EQ(back->offloads[0].id.token_digest, std::string(32, 'K'));
  ASSERT_EQ(back->restores.size(), 1u);
  EXPECT_EQ(back->restores[0].id.key, std::string(32, 'r'));
  EXPECT_EQ(back->restores[0].id.token_digest, std::string(32, 'R'));
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_FALSE(DecodeStepPlan(bytes.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(DecodeStepPlan(bytes + "x").ok());
}

}  // namespace
}  // namespace longctx
