// ParallelFor: the loop helper of the element-wise CPU kernels (internal to
// kernels/).
#ifndef LONGCTX_KERNELS_CPU_PARALLEL_H_
#define LONGCTX_KERNELS_CPU_PARALLEL_H_

#include <cstdint>

namespace longctx::kernels::internal {

// Calls with fewer elements than this run on the calling thread alone.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

// ParallelFor runs body(i) for i in [0, n), spread over the calling thread's
// OpenMP team when `elements` (the call's total work) reaches
// kParallelMinElements; otherwise it loops inline, since even an OpenMP
// region of one thread costs about a microsecond, more than a decode-sized
// call itself.
template <typename Body>
void ParallelFor(int64_t n, int64_t elements, const Body& body) {
  if (n > 1 && elements >= kParallelMinElements) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) body(i);
  } else {
    for (int64_t i = 0; i < n; ++i) body(i);
  }
}

}  // namespace longctx::kernels::internal

#endif  // LONGCTX_KERNELS_CPU_PARALLEL_H_
