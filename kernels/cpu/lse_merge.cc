#include "kernels/lse_merge.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/parallel.h"

namespace longctx::kernels {

void MergeAttention(float* o_a, int64_t o_a_stride, float* lse_a,
                    const float* o_b, int64_t o_b_stride, const float* lse_b,
                    int64_t n_q, int num_heads, int head_dim) {
  const int64_t rows = n_q * num_heads;
  const int d = head_dim;
  internal::ParallelFor(rows, rows * d, [&](int64_t row) {
    const int64_t i = row / num_heads;
    const int64_t h = row % num_heads;
    float* oa = o_a + i * o_a_stride + h * d;
    const float* ob = o_b + i * o_b_stride + h * d;
    const float la = lse_a[row];
    const float lb = lse_b[row];
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    if (lb == kNegInf) {  // b is empty: a stands (o = 0 if a is empty too).
      if (la == kNegInf) std::fill(oa, oa + d, 0.0f);
      return;
    }
    if (la == kNegInf) {  // a is empty: take b.
      std::copy(ob, ob + d, oa);
      lse_a[row] = lb;
      return;
    }
    // Weights relative to the larger lse: one is 1, the other in (0, 1].
    const float high = la > lb ? la : lb;
    const float wa = std::exp(la - high);
    const float wb = std::exp(lb - high);
    const float total = wa + wb;
    const float ca = wa / total;
    const float cb = wb / total;
    for (int x = 0; x < d; ++x) oa[x] = ca * oa[x] + cb * ob[x];
    lse_a[row] = high + std::log(total);
  });
}

}  // namespace longctx::kernels
