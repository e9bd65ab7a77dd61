#include "kernels/cuda/gemm_cuda.h"

#include <cublasLt.h>
#include <dlfcn.h>

#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace longctx::kernels::cuda {
namespace {

// cuBLASLt is loaded when the first CudaGemm is made, not linked: its large
// static thread-local storage would otherwise be part of every thread's
// stack, and threads that ask for small stacks (the /metrics server's) would
// fail to start in every program that links it, GPU in use or not.
struct CublasLt {
  std::string error;  // Empty once loaded.
#define LONGCTX_CUBLASLT_FN(name) decltype(&::name) name = nullptr
  LONGCTX_CUBLASLT_FN(cublasLtCreate);
  LONGCTX_CUBLASLT_FN(cublasLtDestroy);
  LONGCTX_CUBLASLT_FN(cublasLtGetStatusString);
  LONGCTX_CUBLASLT_FN(cublasLtMatmul);
  LONGCTX_CUBLASLT_FN(cublasLtMatmulDescCreate);
  LONGCTX_CUBLASLT_FN(cublasLtMatmulDescDestroy);
  LONGCTX_CUBLASLT_FN(cublasLtMatmulDescSetAttribute);
  LONGCTX_CUBLASLT_FN(cublasLtMatrixLayoutCreate);
  LONGCTX_CUBLASLT_FN(cublasLtMatrixLayoutDestroy);
  LONGCTX_CUBLASLT_FN(cublasLtMatmulPreferenceCreate);
  LONGCTX_CUBLASLT_FN(cublasLtMatmulPreferenceDestroy);
  LONGCTX_CUBLASLT_FN(cublasLtMatmulPreferenceSetAttribute);
  LONGCTX_CUBLASLT_FN(cublasLtMatmulAlgoGetHeuristic);
#undef LONGCTX_CUBLASLT_FN
};

const CublasLt& Lt() {
  static CublasLt* const lt = [] {
    auto* api = new CublasLt;
    void* lib = dlopen("libcublasLt.so.13", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = dlerror();
      api->error = std::string("cannot load cuBLASLt (libcublasLt.so.13): ") +
                   (why != nullptr ? why : "unknown error");
      return api;
    }
    bool ok = true;
    auto load = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
          dlsym(lib, name));
      if (fn == nullptr) {
        ok = false;
        api->error = std::string("cuBLASLt lacks ") + name;
      }
    };
#define LONGCTX_LOAD(name) load(api->name, #name)
    LONGCTX_LOAD(cublasLtCreate);
    LONGCTX_LOAD(cublasLtDestroy);
    LONGCTX_LOAD(cublasLtGetStatusString);
    LONGCTX_LOAD(cublasLtMatmul);
    LONGCTX_LOAD(cublasLtMatmulDescCreate);
    LONGCTX_LOAD(cublasLtMatmulDescDestroy);
    LONGCTX_LOAD(cublasLtMatmulDescSetAttribute);
    LONGCTX_LOAD(cublasLtMatrixLayoutCreate);
    LONGCTX_LOAD(cublasLtMatrixLayoutDestroy);
    LONGCTX_LOAD(cublasLtMatmulPreferenceCreate);
    LONGCTX_LOAD(cublasLtMatmulPreferenceDestroy);
    LONGCTX_LOAD(cublasLtMatmulPreferenceSetAttribute);
    LONGCTX_LOAD(cublasLtMatmulAlgoGetHeuristic);
#undef LONGCTX_LOAD
    if (!ok) dlclose(lib);
    return api;
  }();
  return *lt;
}

std::string CublasError(const char* what, cublasStatus_t status) {
  return std::string(what) + " failed: " + Lt().cublasLtGetStatusString(status);
}

}  // namespace

struct CudaGemm::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;

  // Everything cuBLASLt needs for one shape, made once.
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t>;
  std::map<Key, Plan> plans;

  ~Impl() {
    for (auto& [key, plan] : plans) {
      Lt().cublasLtMatrixLayoutDestroy(plan.a);
      Lt().cublasLtMatrixLayoutDestroy(plan.b);
      Lt().cublasLtMatrixLayoutDestroy(plan.c);
      Lt().cublasLtMatmulDescDestroy(plan.desc);
    }
    if (workspace != nullptr) cudaFree(workspace);
    if (handle != nullptr) Lt().cublasLtDestroy(handle);
  }

  // MakePlan describes Y^T[n, m] = W[k, n]^T X^T[k, m] in cuBLASLt's
  // column-major terms: a row-major [n, k] weight is a column-major k x n
  // matrix (transposed: op A = T), a row-major [m, k] activation is a
  // column-major k x m matrix (op B = N), and the column-major n x m result
  // is Y row-major [m, n].
  std::string MakePlan(DType dtype, int64_t x_stride, int64_t y_stride,
                       int64_t m, int64_t n, int64_t k, Plan* plan) {
    const cudaDataType_t in_type =
        dtype == DType::kBf16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasStatus_t s = Lt().cublasLtMatmulDescCreate(
        &plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (s != CUBLAS_STATUS_SUCCESS) return CublasError("MatmulDescCreate", s);
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    Lt().cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                        &op_t, sizeof(op_t));
    Lt().cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                        &op_n, sizeof(op_n));
    s = Lt().cublasLtMatrixLayoutCreate(&plan->a, in_type, k, n, k);
    if (s == CUBLAS_STATUS_SUCCESS) {
      s = Lt().cublasLtMatrixLayoutCreate(&plan->b, in_type, k, m, x_stride);
    }
    if (s == CUBLAS_STATUS_SUCCESS) {
      s = Lt().cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_32F, n, m, y_stride);
    }
    if (s != CUBLAS_STATUS_SUCCESS) return CublasError("MatrixLayoutCreate", s);
    cublasLtMatmulPreference_t pref = nullptr;
    s = Lt().cublasLtMatmulPreferenceCreate(&pref);
    if (s != CUBLAS_STATUS_SUCCESS) return CublasError("PreferenceCreate", s);
    Lt().cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
        sizeof(workspace_bytes));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    s = Lt().cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a,
                                            plan->b, plan->c, plan->c, pref, 1,
                                            &result, &found);
    Lt().cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS) return CublasError("AlgoGetHeuristic", s);
    if (found == 0) {
      return "cuBLASLt has no algorithm for a " + std::to_string(m) + "x" +
             std::to_string(n) + "x" + std::to_string(k) + " GEMM";
    }
    plan->algo = result.algo;
    return "";
  }
};

CudaGemm::CudaGemm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaGemm::~CudaGemm() = default;

std::unique_ptr<CudaGemm> CudaGemm::Create(size_t workspace_bytes,
                                           std::string* error) {
  if (!Lt().error.empty()) {
    *error = Lt().error;
    return nullptr;
  }
  auto impl = std::make_unique<Impl>();
  cublasStatus_t s = Lt().cublasLtCreate(&impl->handle);
  if (s != CUBLAS_STATUS_SUCCESS) {
    *error = CublasError("cublasLtCreate", s);
    return nullptr;
  }
  if (workspace_bytes > 0) {
    cudaError_t e = cudaMalloc(&impl->workspace, workspace_bytes);
    if (e != cudaSuccess) {
      *error = std::string("cuBLASLt workspace: ") + cudaGetErrorString(e);
      return nullptr;
    }
  }
  impl->workspace_bytes = workspace_bytes;
  return std::unique_ptr<CudaGemm>(new CudaGemm(std::move(impl)));
}

std::string CudaGemm::Run(DType dtype, const void* x, int64_t x_stride,
                          const void* w, float* y, int64_t y_stride, int64_t m,
                          int64_t n, int64_t k, bool accumulate,
                          cudaStream_t stream) {
  if (dtype != DType::kF32 && dtype != DType::kBf16) {
    return "GEMM inputs must be f32 or bf16";
  }
  if (m < 1 || n < 1 || k < 1 || x_stride < k || y_stride < n || x == nullptr ||
      w == nullptr || y == nullptr) {
    return "bad GEMM arguments";
  }
  const Impl::Key key{static_cast<int>(dtype), x_stride, y_stride, m, n, k};
  auto it = impl_->plans.find(key);
  if (it == impl_->plans.end()) {
    Impl::Plan plan;
    std::string error =
        impl_->MakePlan(dtype, x_stride, y_stride, m, n, k, &plan);
    if (!error.empty()) {
      Lt().cublasLtMatrixLayoutDestroy(plan.a);
      Lt().cublasLtMatrixLayoutDestroy(plan.b);
      Lt().cublasLtMatrixLayoutDestroy(plan.c);
      if (plan.desc != nullptr) Lt().cublasLtMatmulDescDestroy(plan.desc);
      return error;
    }
    it = impl_->plans.emplace(key, plan).first;
  }
  const Impl::Plan& plan = it->second;
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  cublasStatus_t s = Lt().cublasLtMatmul(
      impl_->handle, plan.desc, &alpha, w, plan.a, x, plan.b, &beta, y, plan.c,
      y, plan.c, &plan.algo, impl_->workspace, impl_->workspace_bytes, stream);
  if (s != CUBLAS_STATUS_SUCCESS) return CublasError("cublasLtMatmul", s);
  return "";
}

}  // namespace longctx::kernels::cuda
