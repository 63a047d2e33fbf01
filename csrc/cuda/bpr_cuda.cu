// CUDA kernels of the fused BPR loss: one warp per triple. The forward checks the indices and the
// finiteness of the gathered rows in the same pass; the backward scatter-adds each triple's
// gradient rows straight into the dense gradients with atomics (float or double accumulation).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/to.h>
#include <ATen/ops/zeros.h>
#include <c10/core/DeviceGuard.h>

#include <cmath>

#include "bpr.h"
#include "cuda/launch.cuh"

namespace sgfd {
namespace {

// Slots of the error record: the first bad position of users, pos and neg, and the first triple
// whose loss term is not finite. Each starts at the batch size (no error).
enum ErrorSlot { kBadUser = 0, kBadPos = 1, kBadNeg = 2, kNonFinite = 3, kSlots = 4 };

template <typename acc_t>
__device__ __forceinline__ acc_t softplus(acc_t y) {
  return (y > acc_t(0) ? y : acc_t(0)) + log1p(exp(-fabs(y)));
}

template <typename acc_t>
__device__ __forceinline__ acc_t sigmoid(acc_t y) {
  const acc_t e = exp(-fabs(y));
  return y >= acc_t(0) ? acc_t(1) / (acc_t(1) + e) : e / (acc_t(1) + e);
}

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const scalar_t* __restrict__ user_table,
                               const scalar_t* __restrict__ item_table,
                               const int64_t* __restrict__ users, const int64_t* __restrict__ pos,
                               const int64_t* __restrict__ neg, int64_t B, int64_t d,
                               int64_t n_users, int64_t n_items, acc_t half_reg,
                               acc_t* __restrict__ term, acc_t* __restrict__ sig,
                               unsigned long long* __restrict__ errors) {
  const int lane = threadIdx.x % kWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; b < B;
       b += stride) {
    const int64_t u = users[b], p = pos[b], q = neg[b];
    const bool bad_u = u < 0 || u >= n_users, bad_p = p < 0 || p >= n_items;
    const bool bad_q = q < 0 || q >= n_items;
    if (bad_u || bad_p || bad_q) {
      if (lane == 0) {
        const auto position = static_cast<unsigned long long>(b);
        if (bad_u) atomicMin(errors + kBadUser, position);
        if (bad_p) atomicMin(errors + kBadPos, position);
        if (bad_q) atomicMin(errors + kBadNeg, position);
        term[b] = 0;
        sig[b] = 0;
      }
      continue;
    }

    const scalar_t* ur = user_table + u * d;
    const scalar_t* pr = item_table + p * d;
    const scalar_t* qr = item_table + q * d;
    acc_t margin = 0, sq = 0;
    for (int64_t j = lane; j < d; j += kWarp) {
      const acc_t uv = static_cast<acc_t>(ur[j]), pv = static_cast<acc_t>(pr[j]);
      const acc_t qv = static_cast<acc_t>(qr[j]);
      margin += uv * (pv - qv);
      sq += uv * uv + pv * pv + qv * qv;
    }
    margin = warp_sum(margin);
    sq = warp_sum(sq);
    if (lane == 0) {
      const acc_t t = softplus(-margin) + half_reg * sq;
      term[b] = t;
      sig[b] = sigmoid(-margin);
      if (!isfinite(t)) atomicMin(errors + kNonFinite, static_cast<unsigned long long>(b));
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad, const acc_t* __restrict__ sig,
                                const scalar_t* __restrict__ user_table,
                                const scalar_t* __restrict__ item_table,
                                const int64_t* __restrict__ users, const int64_t* __restrict__ pos,
                                const int64_t* __restrict__ neg, int64_t B, int64_t d,
                                int64_t n_users, int64_t n_items, acc_t reg,
                                acc_t* __restrict__ grad_user, acc_t* __restrict__ grad_item) {
  const int lane = threadIdx.x % kWarp;
  const acc_t g = static_cast<acc_t>(*grad) / static_cast<acc_t>(B);
  const acc_t reg_scale = g * reg;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; b < B;
       b += stride) {
    const int64_t u = users[b], p = pos[b], q = neg[b];
    // The forward has rejected such indices; skipping them keeps a direct call memory-safe.
    if (u < 0 || u >= n_users || p < 0 || p >= n_items || q < 0 || q >= n_items) continue;
    const acc_t w = -g * sig[b];
    const scalar_t* ur = user_table + u * d;
    const scalar_t* pr = item_table + p * d;
    const scalar_t* qr = item_table + q * d;
    for (int64_t j = lane; j < d; j += kWarp) {
      const acc_t uv = static_cast<acc_t>(ur[j]), pv = static_cast<acc_t>(pr[j]);
      const acc_t qv = static_cast<acc_t>(qr[j]);
      if (grad_user) atomicAdd(grad_user + u * d + j, w * (pv - qv) + reg_scale * uv);
      if (grad_item) {
        atomicAdd(grad_item + p * d + j, w * uv + reg_scale * pv);
        atomicAdd(grad_item + q * d + j, -w * uv + reg_scale * qv);
      }
    }
  }
}

void raise_recorded_error(const at::Tensor& errors, const at::Tensor& user_table,
                          const at::Tensor& item_table, const at::Tensor& users,
                          const at::Tensor& pos, const at::Tensor& neg) {
  // Limitation: reading the error record back is one host synchronisation per forward call.
  const at::Tensor host = errors.to(at::kCPU);
  const auto* slot = reinterpret_cast<const unsigned long long*>(host.data_ptr<int64_t>());
  const auto B = static_cast<unsigned long long>(users.size(0));
  const at::Tensor* index[] = {&users, &pos, &neg};
  const char* arg[] = {"users", "pos", "neg"};
  const char* table[] = {"user_table", "item_table", "item_table"};
  const int64_t rows[] = {user_table.size(0), item_table.size(0), item_table.size(0)};
  for (int k = kBadUser; k <= kBadNeg; ++k) {
    if (slot[k] < B) {
      const auto position = static_cast<int64_t>(slot[k]);
      bpr_index_error(arg[k], position, (*index[k])[position].item<int64_t>(), table[k], rows[k]);
    }
  }
  if (slot[kNonFinite] < B) bpr_diagnose_nonfinite(user_table, item_table, users, pos, neg);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> bpr_loss_cuda(const at::Tensor& user_table,
                                                 const at::Tensor& item_table,
                                                 const at::Tensor& users_in,
                                                 const at::Tensor& pos_in, const at::Tensor& neg_in,
                                                 double reg) {
  const c10::OptionalDeviceGuard guard(user_table.device());
  const at::Tensor users = users_in.contiguous(), pos = pos_in.contiguous();
  const at::Tensor neg = neg_in.contiguous();
  const at::Tensor ut = user_table.contiguous(), it = item_table.contiguous();
  const int64_t B = users.size(0), d = ut.size(1);
  const at::ScalarType acc_type = at::toOpMathType(ut.scalar_type());
  at::Tensor term = at::empty({B}, ut.options().dtype(acc_type));
  at::Tensor sig = at::empty({B}, ut.options().dtype(acc_type));
  at::Tensor errors = at::full({kSlots}, B, users.options());

  if (B > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, ut.scalar_type(), "bpr_loss_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      forward_kernel<scalar_t, acc_t><<<blocks_for_rows(B), kThreads, 0, current_stream()>>>(
          ut.data_ptr<scalar_t>(), it.data_ptr<scalar_t>(), users.data_ptr<int64_t>(),
          pos.data_ptr<int64_t>(), neg.data_ptr<int64_t>(), B, d, ut.size(0), it.size(0),
          static_cast<acc_t>(0.5 * reg), term.data_ptr<acc_t>(), sig.data_ptr<acc_t>(),
          reinterpret_cast<unsigned long long*>(errors.data_ptr<int64_t>()));
      check_launch();
    });
    raise_recorded_error(errors, ut, it, users, pos, neg);
  }

  const double count = static_cast<double>(std::max<int64_t>(B, 1));
  at::Tensor loss = term.sum().div(count).to(ut.scalar_type());
  return {loss, sig};
}

std::tuple<at::Tensor, at::Tensor> bpr_loss_backward_cuda(
    const at::Tensor& grad, const at::Tensor& sig_in, const at::Tensor& user_table,
    const at::Tensor& item_table, const at::Tensor& users_in, const at::Tensor& pos_in,
    const at::Tensor& neg_in, double reg, std::array<bool, 2> output_mask) {
  const c10::OptionalDeviceGuard guard(user_table.device());
  const at::Tensor users = users_in.contiguous(), pos = pos_in.contiguous();
  const at::Tensor neg = neg_in.contiguous();
  const at::Tensor ut = user_table.contiguous(), it = item_table.contiguous();
  const at::ScalarType dtype = ut.scalar_type(), acc_type = at::toOpMathType(dtype);
  const at::Tensor sig = sig_in.to(acc_type).contiguous();
  const at::Tensor g = grad.reshape({1}).to(dtype).contiguous();
  const int64_t B = users.size(0), d = ut.size(1);

  // Accumulate in the gradients themselves, or in float buffers for bfloat16 tables.
  const auto acc_opts = ut.options().dtype(acc_type);
  at::Tensor acc_user = at::zeros({output_mask[0] ? ut.size(0) : 0, d}, acc_opts);
  at::Tensor acc_item = at::zeros({output_mask[1] ? it.size(0) : 0, d}, acc_opts);
  if (B > 0 && d > 0 && (output_mask[0] || output_mask[1])) {
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, dtype, "bpr_loss_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, acc_t><<<blocks_for_rows(B), kThreads, 0, current_stream()>>>(
          g.data_ptr<scalar_t>(), sig.data_ptr<acc_t>(), ut.data_ptr<scalar_t>(),
          it.data_ptr<scalar_t>(), users.data_ptr<int64_t>(), pos.data_ptr<int64_t>(),
          neg.data_ptr<int64_t>(), B, d, ut.size(0), it.size(0), static_cast<acc_t>(reg),
          output_mask[0] ? acc_user.data_ptr<acc_t>() : nullptr,
          output_mask[1] ? acc_item.data_ptr<acc_t>() : nullptr);
      check_launch();
    });
  }

  at::Tensor grad_user = output_mask[0] ? acc_user.to(dtype) : at::empty({0}, ut.options());
  at::Tensor grad_item = output_mask[1] ? acc_item.to(dtype) : at::empty({0}, it.options());
  return {grad_user, grad_item};
}

}  // namespace sgfd
