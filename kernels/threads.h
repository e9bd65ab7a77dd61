// Thread count of the CPU kernels.
//
// The parallel kernels (GEMM through oneDNN, attention, and the element-wise
// kernels on large inputs) run on OpenMP. Each calling thread has its own
// setting, as with omp_set_num_threads.
#ifndef LONGCTX_KERNELS_THREADS_H_
#define LONGCTX_KERNELS_THREADS_H_

namespace longctx::kernels {

// SetNumThreads makes kernels called from this thread use up to `n` threads
// (n >= 1; smaller values are treated as 1).
void SetNumThreads(int n);

// NumThreads returns the number of threads kernels called from this thread
// use: the last SetNumThreads value, else OMP_NUM_THREADS, else the number of
// CPUs.
int NumThreads();

}  // namespace longctx::kernels

#endif  // LONGCTX_KERNELS_THREADS_H_
