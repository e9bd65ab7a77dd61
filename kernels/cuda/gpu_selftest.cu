// gpu_selftest: checks every CUDA kernel against a double-precision CPU reference on
// random inputs of awkward sizes, and that cuBLAS and NCCL (a communicator of the
// ranks this machine's GPUs allow) work. Prints one line per check and
// "N passed, N failed"; exits non-zero on any failure or when no GPU is present.
// Depends on CUDA, cuBLAS, NCCL and the C++ standard library only, so it builds with
// the CMakeLists.txt beside it on a GPU machine without Bazel.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/rms_norm_cuda.h"

namespace {

int g_passed = 0;
int g_failed = 0;

void Report(const std::string& name, bool ok, const std::string& detail) {
  std::printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
  (ok ? g_passed : g_failed)++;
}

#define CHECK_CUDA(call)                                                   \
  do {                                                                     \
    cudaError_t e = (call);                                                \
    if (e != cudaSuccess) {                                                \
      Report(#call, false, cudaGetErrorString(e));                         \
      return;                                                              \
    }                                                                      \
  } while (0)

// RMSNorm: tolerance 1e-5 relative: fp32 accumulation over at most a few thousand
// terms against a double reference.
void CheckRmsNorm(int rows, int dim, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(size_t(rows) * dim), w(dim), y(x.size());
  for (float& v : x) v = normal(rng) * 3.f;
  for (float& v : w) v = 1.f + 0.1f * normal(rng);
  float *dx, *dw, *dy;
  CHECK_CUDA(cudaMalloc(&dx, x.size() * 4));
  CHECK_CUDA(cudaMalloc(&dw, w.size() * 4));
  CHECK_CUDA(cudaMalloc(&dy, y.size() * 4));
  CHECK_CUDA(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice));
  const float eps = 1e-5f;
  CHECK_CUDA(longctx::kernels::cuda::RmsNorm(dx, dw, dy, rows, dim, eps, 0));
  CHECK_CUDA(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
  double worst = 0;
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    double scale = 1.0 / std::sqrt(ss / dim + eps);
    for (int i = 0; i < dim; ++i) {
      double ref = x[r * dim + i] * scale * w[i];
      double err = std::fabs(ref - y[r * dim + i]) / (std::fabs(ref) + 1e-3);
      if (err > worst) worst = err;
    }
  }
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
  char detail[128];
  std::snprintf(detail, sizeof(detail), "rows=%d dim=%d max rel err %.2e (tol 1e-5)",
                rows, dim, worst);
  Report("rms_norm", worst <= 1e-5, detail);
}

// cuBLAS SGEMM on an awkward shape against a double reference; tolerance 1e-4
// relative to the row's magnitude (fp32 accumulation, K=77; TF32 is not enabled).
void CheckCublas(std::mt19937& rng) {
  const int m = 33, n = 45, k = 77;
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::vector<float> a(m * k), b(k * n), c(m * n);
  for (float& v : a) v = uni(rng);
  for (float& v : b) v = uni(rng);
  float *da, *db, *dc;
  CHECK_CUDA(cudaMalloc(&da, a.size() * 4));
  CHECK_CUDA(cudaMalloc(&db, b.size() * 4));
  CHECK_CUDA(cudaMalloc(&dc, c.size() * 4));
  cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    Report("cublas", false, "cublasCreate failed");
    return;
  }
  // Column-major: C(m x n) = A(m x k) * B(k x n) with row-major data means computing
  // C^T = B^T A^T.
  const float alpha = 1.f, beta = 0.f;
  cublasStatus_t st = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha,
                                  db, n, da, k, &beta, dc, n);
  cudaMemcpy(c.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost);
  cublasDestroy(handle);
  double worst = 0;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double ref = 0;
      for (int p = 0; p < k; ++p) ref += double(a[i * k + p]) * b[p * n + j];
      worst = std::fmax(worst, std::fabs(ref - c[i * n + j]) / std::sqrt(double(k)));
    }
  }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  char detail[96];
  std::snprintf(detail, sizeof(detail), "sgemm %dx%dx%d max err %.2e (tol 1e-4)", m,
                n, k, worst);
  Report("cublas", st == CUBLAS_STATUS_SUCCESS && worst < 1e-4, detail);
}

// NCCL: one communicator over every GPU of this machine (NCCL refuses two ranks on
// one GPU), all-reduce of rank-dependent values, checked exactly (small integers).
void CheckNccl() {
  int devices = 0;
  cudaGetDeviceCount(&devices);
  std::vector<ncclComm_t> comms(devices);
  std::vector<int> ids(devices);
  for (int i = 0; i < devices; ++i) ids[i] = i;
  ncclResult_t r = ncclCommInitAll(comms.data(), devices, ids.data());
  if (r != ncclSuccess) {
    Report("nccl", false, ncclGetErrorString(r));
    return;
  }
  const int count = 1000;
  std::vector<float*> buffers(devices);
  for (int i = 0; i < devices; ++i) {
    cudaSetDevice(i);
    cudaMalloc(&buffers[i], count * 4);
    std::vector<float> init(count, float(i + 1));
    cudaMemcpy(buffers[i], init.data(), count * 4, cudaMemcpyHostToDevice);
  }
  ncclGroupStart();
  for (int i = 0; i < devices; ++i) {
    ncclAllReduce(buffers[i], buffers[i], count, ncclFloat, ncclSum, comms[i], 0);
  }
  r = ncclGroupEnd();
  bool ok = r == ncclSuccess;
  const float expected = float(devices) * (devices + 1) / 2;
  for (int i = 0; i < devices; ++i) {
    cudaSetDevice(i);
    cudaDeviceSynchronize();
    std::vector<float> out(count);
    cudaMemcpy(out.data(), buffers[i], count * 4, cudaMemcpyDeviceToHost);
    for (float v : out) ok = ok && v == expected;
    cudaFree(buffers[i]);
    ncclCommDestroy(comms[i]);
  }
  int version = 0;
  ncclGetVersion(&version);
  char detail[96];
  std::snprintf(detail, sizeof(detail), "all-reduce over %d rank(s), NCCL %d",
                devices, version);
  Report("nccl", ok, detail);
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: nothing to check\n0 passed, 1 failed\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device 0: %s, sm_%d%d, %d GPU(s)\n", prop.name, prop.major,
              prop.minor, devices);
  std::mt19937 rng(42);
  for (auto [rows, dim] : {std::pair{1, 1}, {7, 33}, {13, 1000}, {3, 4097}}) {
    CheckRmsNorm(rows, dim, rng);
  }
  CheckCublas(rng);
  CheckNccl();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
