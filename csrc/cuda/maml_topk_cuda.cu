// CUDA kernel of maml_topk. Users are processed in chunks whose users x items scores fit a
// bounded buffer: one thread scores one (user, item) pair with an online softmax over the
// attention logits, excluded items are set to -inf, and a stable descending sort per user picks
// the top K (ties to the lower item index).
//
// Limitation: the selection sorts every item of a user instead of keeping a running top-K, so a
// chunk's scores are materialised in device memory.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/where.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>

#include "maml_topk.h"

namespace sgfd_ext {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxHidden = 1024;          // attention width held per thread
constexpr int64_t kChunkScores = int64_t{1} << 26;  // scores per chunk (256 MiB in float32)

// The stream PyTorch currently uses on device; reached through the device-guard interface so
// that the file also compiles against a CPU build of PyTorch.
cudaStream_t current_stream(const c10::Device& device) {
  const auto stream = c10::impl::getDeviceGuardImpl(device.type())->getStream(device);
  return static_cast<cudaStream_t>(stream.native_handle());
}

void check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, kernel, " failed to launch: ", cudaGetErrorString(err));
}

template <typename T>
__global__ void maml_scores_kernel(const T* __restrict__ user_hidden, const T* __restrict__ user_emb,
                                   const T* __restrict__ item_hidden, const T* __restrict__ item_emb,
                                   const T* __restrict__ w2, const T* __restrict__ b2,
                                   int64_t n_items, int64_t a, int64_t d, T* __restrict__ scores) {
  const int64_t u = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_items) {
    return;
  }
  const T* uh = user_hidden + u * a;
  const T* ih = item_hidden + i * a;
  T h[kMaxHidden];
  for (int64_t j = 0; j < a; ++j) {
    h[j] = tanh(uh[j] + ih[j]);
  }

  T peak = -INFINITY;
  T total = 0;
  T weighted = 0;
  const T* ue = user_emb + u * d;
  const T* ie = item_emb + i * d;
  for (int64_t k = 0; k < d; ++k) {
    T logit = b2[k];
    const T* wk = w2 + k * a;
    for (int64_t j = 0; j < a; ++j) {
      logit += wk[j] * h[j];
    }
    const T diff = ue[k] - ie[k];
    if (logit > peak) {
      const T rescale = exp(peak - logit);
      total *= rescale;
      weighted *= rescale;
      peak = logit;
    }
    const T e = exp(logit - peak);
    total += e;
    weighted += e * diff * diff;
  }
  scores[u * n_items + i] = -static_cast<T>(d) * weighted / total;
}

template <typename T>
__global__ void exclude_kernel(const int64_t* __restrict__ indptr, const int64_t* __restrict__ indices,
                               int64_t first_user, int64_t n_items, T* __restrict__ scores) {
  const int64_t row = blockIdx.x;
  const int64_t begin = indptr[first_user + row], end = indptr[first_user + row + 1];
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    scores[row * n_items + indices[e]] = -INFINITY;
  }
}

std::tuple<at::Tensor, at::Tensor> maml_topk_cuda(
    const at::Tensor& user_hidden, const at::Tensor& user_emb, const at::Tensor& item_hidden,
    const at::Tensor& item_emb, const at::Tensor& w2, const at::Tensor& b2,
    const at::Tensor& exclude_indptr, const at::Tensor& exclude_indices, int64_t k) {
  check_maml_topk_inputs(user_hidden, user_emb, item_hidden, item_emb, w2, b2, exclude_indptr,
                         exclude_indices, k);
  TORCH_CHECK(w2.size(1) <= kMaxHidden, "the CUDA maml_topk supports an attention width of at most ",
              kMaxHidden, ", got ", w2.size(1));
  const c10::DeviceGuard guard(user_emb.device());
  const auto uh = user_hidden.contiguous(), ue = user_emb.contiguous();
  const auto ih = item_hidden.contiguous(), ie = item_emb.contiguous();
  const auto w = w2.contiguous(), b = b2.contiguous();
  const auto ptr = exclude_indptr.contiguous(), idx = exclude_indices.contiguous();

  const int64_t n_users = ue.size(0), d = ue.size(1), n_items = ie.size(0), a = w.size(1);
  auto top_items = at::full({n_users, k}, -1, ue.options().dtype(at::kLong));
  auto top_scores = at::full({n_users, k}, -std::numeric_limits<double>::infinity(), ue.options());
  if (n_users == 0 || n_items == 0) {
    return {top_items, top_scores};
  }

  const int64_t chunk = std::clamp<int64_t>(kChunkScores / n_items, 1, 65535);
  const int64_t keep = std::min(k, n_items);
  const cudaStream_t stream = current_stream(user_emb.device());
  for (int64_t u0 = 0; u0 < n_users; u0 += chunk) {
    const int64_t rows = std::min(chunk, n_users - u0);
    auto scores = at::empty({rows, n_items}, ue.options());
    const dim3 grid(static_cast<unsigned>((n_items + kThreads - 1) / kThreads),
                    static_cast<unsigned>(rows));
    AT_DISPATCH_FLOATING_TYPES(ue.scalar_type(), "maml_topk_cuda", [&] {
      maml_scores_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
          uh.data_ptr<scalar_t>() + u0 * a, ue.data_ptr<scalar_t>() + u0 * d,
          ih.data_ptr<scalar_t>(), ie.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
          b.data_ptr<scalar_t>(), n_items, a, d, scores.data_ptr<scalar_t>());
      check_launch("maml_scores_kernel");
      exclude_kernel<scalar_t><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
          ptr.data_ptr<int64_t>(), idx.data_ptr<int64_t>(), u0, n_items,
          scores.data_ptr<scalar_t>());
      check_launch("exclude_kernel");
    });

    auto [values, order] = at::sort(scores, /*stable=*/true, /*dim=*/1, /*descending=*/true);
    values = values.narrow(1, 0, keep);
    order = order.narrow(1, 0, keep);
    const auto ranked = values.gt(-std::numeric_limits<double>::infinity());
    top_items.narrow(0, u0, rows).narrow(1, 0, keep).copy_(at::where(ranked, order, -1));
    top_scores.narrow(0, u0, rows).narrow(1, 0, keep).copy_(values);
  }
  return {top_items, top_scores};
}

}  // namespace
}  // namespace sgfd_ext

TORCH_LIBRARY_IMPL(sgfd_ext, CUDA, m) { m.impl("maml_topk", &sgfd_ext::maml_topk_cuda); }
