// CUDA kernels of the student projection with feature distillation. The matrix products run in
// cuBLAS (at::mm); one warp per row runs the fused epilogue with float (or double) accumulation,
// so bfloat16 inputs lose no precision in the row norm or the loss.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/to.h>
#include <ATen/ops/zeros.h>
#include <c10/core/DeviceGuard.h>

#include <algorithm>
#include <cmath>

#include "cuda/launch.cuh"
#include "student_fd.h"

namespace sgfd {
namespace {

// In place on z = x @ weight: add bias, leaky ReLU, divide by the clamped row norm. Writes the
// unclamped norm and the squared distance to the teacher of each row.
template <typename scalar_t, typename acc_t>
__global__ void forward_epilogue_kernel(scalar_t* __restrict__ zs,
                                        const scalar_t* __restrict__ bias,
                                        const scalar_t* __restrict__ teacher,
                                        acc_t* __restrict__ norm, acc_t* __restrict__ dist,
                                        int64_t rows, int64_t d, acc_t slope, acc_t eps) {
  const int lane = threadIdx.x % kWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       i < rows; i += stride) {
    scalar_t* row = zs + i * d;
    const scalar_t* t = teacher + i * d;

    acc_t sq = 0;
    for (int64_t j = lane; j < d; j += kWarp) {
      const acc_t z = static_cast<acc_t>(row[j]) + static_cast<acc_t>(bias[j]);
      const acc_t a = z > acc_t(0) ? z : z * slope;
      sq += a * a;
    }
    const acc_t nrm = sqrt(warp_sum(sq));
    const acc_t denom = nrm >= eps ? nrm : eps;

    acc_t dd = 0;
    for (int64_t j = lane; j < d; j += kWarp) {
      const acc_t z = static_cast<acc_t>(row[j]) + static_cast<acc_t>(bias[j]);
      const acc_t a = z > acc_t(0) ? z : z * slope;
      const scalar_t s = static_cast<scalar_t>(a / denom);
      row[j] = s;
      const acc_t diff = static_cast<acc_t>(s) - static_cast<acc_t>(t[j]);
      dd += diff * diff;
    }
    dd = warp_sum(dd);
    if (lane == 0) {
      norm[i] = nrm;
      dist[i] = dd;
    }
  }
}

// One row: grad of s (from grad_s and the loss) -> normalize backward -> leaky ReLU backward.
// grad_s, grad_fd, grad_z and grad_teacher may each be null.
template <typename scalar_t, typename acc_t>
__global__ void backward_epilogue_kernel(const scalar_t* __restrict__ grad_s,
                                         const scalar_t* __restrict__ grad_fd,
                                         const scalar_t* __restrict__ s,
                                         const acc_t* __restrict__ norm,
                                         const scalar_t* __restrict__ teacher,
                                         scalar_t* __restrict__ grad_z,
                                         scalar_t* __restrict__ grad_teacher, int64_t rows,
                                         int64_t d, acc_t slope, acc_t eps, acc_t inv_count2) {
  const int lane = threadIdx.x % kWarp;
  const acc_t scale = grad_fd ? static_cast<acc_t>(*grad_fd) * inv_count2 : acc_t(0);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       i < rows; i += stride) {
    const int64_t off = i * d;

    acc_t dot = 0;
    for (int64_t j = lane; j < d; j += kWarp) {
      const acc_t sv = static_cast<acc_t>(s[off + j]);
      const acc_t fd_grad = scale * (sv - static_cast<acc_t>(teacher[off + j]));
      const acc_t gs = (grad_s ? static_cast<acc_t>(grad_s[off + j]) : acc_t(0)) + fd_grad;
      if (grad_teacher) grad_teacher[off + j] = static_cast<scalar_t>(-fd_grad);
      dot += sv * gs;
    }
    if (!grad_z) continue;
    dot = warp_sum(dot);

    // Below the clamp the norm is a constant and the row is only scaled.
    const acc_t nrm = norm[i];
    const bool clamped = !(nrm >= eps);
    const acc_t denom = clamped ? eps : nrm;
    if (clamped) dot = 0;
    for (int64_t j = lane; j < d; j += kWarp) {
      const acc_t sv = static_cast<acc_t>(s[off + j]);
      const acc_t fd_grad = scale * (sv - static_cast<acc_t>(teacher[off + j]));
      const acc_t gs = (grad_s ? static_cast<acc_t>(grad_s[off + j]) : acc_t(0)) + fd_grad;
      const acc_t ga = (gs - sv * dot) / denom;
      grad_z[off + j] = static_cast<scalar_t>(sv > acc_t(0) ? ga : ga * slope);
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> student_fd_cuda(const at::Tensor& x,
                                                               const at::Tensor& weight,
                                                               const at::Tensor& bias,
                                                               const at::Tensor& teacher,
                                                               double negative_slope) {
  const c10::OptionalDeviceGuard guard(x.device());
  const int64_t B = x.size(0), d = weight.size(1);
  const at::ScalarType acc_type = at::toOpMathType(x.scalar_type());
  at::Tensor s = at::mm(x, weight);
  if (!s.is_contiguous()) s = s.contiguous();
  at::Tensor norm = at::zeros({B}, x.options().dtype(acc_type));
  at::Tensor dist = at::zeros({B}, x.options().dtype(acc_type));
  const at::Tensor b = bias.contiguous();
  const at::Tensor t = teacher.contiguous();

  if (B > 0 && d > 0) {
    const auto stream = current_stream();
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "student_fd_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      forward_epilogue_kernel<scalar_t, acc_t><<<blocks_for_rows(B), kThreads, 0, stream>>>(
          s.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
          norm.data_ptr<acc_t>(), dist.data_ptr<acc_t>(), B, d, static_cast<acc_t>(negative_slope),
          static_cast<acc_t>(kStudentNormEps));
      check_launch();
    });
  }

  // Limitation: the finiteness check reads the loss back to the host, one synchronisation per call.
  const at::Tensor total = dist.sum();
  if (!std::isfinite(total.item<double>())) student_fd_diagnose_nonfinite(s, t);
  const double count = static_cast<double>(std::max<int64_t>(B * d, 1));
  at::Tensor fd = total.div(count).to(x.scalar_type());
  return {s, fd, norm};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> student_fd_backward_cuda(
    const std::optional<at::Tensor>& grad_s, const std::optional<at::Tensor>& grad_fd,
    const at::Tensor& s_in, const at::Tensor& norm_in, const at::Tensor& teacher_in,
    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& weight,
    double negative_slope, std::array<bool, 4> output_mask) {
  const c10::OptionalDeviceGuard guard(s_in.device());
  const int64_t B = s_in.size(0), d = s_in.size(1);
  const auto opts = s_in.options();
  const bool need_z = output_mask[0] || output_mask[1] || output_mask[2];
  const at::Tensor s = s_in.contiguous();
  const at::Tensor norm = norm_in.to(at::toOpMathType(s.scalar_type())).contiguous();
  const at::Tensor teacher = teacher_in.contiguous();
  at::Tensor gs, gfd;
  if (grad_s.has_value()) gs = grad_s->contiguous();
  if (grad_fd.has_value()) gfd = grad_fd->reshape({1}).contiguous();

  at::Tensor grad_z = at::empty({need_z ? B : 0, d}, opts);
  at::Tensor grad_teacher = output_mask[3] ? at::empty({B, d}, opts) : at::empty({0}, opts);
  if ((need_z || output_mask[3]) && B > 0 && d > 0) {
    const auto stream = current_stream();
    const double inv_count2 = 2.0 / static_cast<double>(B * d);
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, s.scalar_type(), "student_fd_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_epilogue_kernel<scalar_t, acc_t><<<blocks_for_rows(B), kThreads, 0, stream>>>(
          gs.defined() ? gs.data_ptr<scalar_t>() : nullptr,
          gfd.defined() ? gfd.data_ptr<scalar_t>() : nullptr, s.data_ptr<scalar_t>(),
          norm.data_ptr<acc_t>(), teacher.data_ptr<scalar_t>(),
          need_z ? grad_z.data_ptr<scalar_t>() : nullptr,
          output_mask[3] ? grad_teacher.data_ptr<scalar_t>() : nullptr, B, d,
          static_cast<acc_t>(negative_slope), static_cast<acc_t>(kStudentNormEps),
          static_cast<acc_t>(inv_count2));
      check_launch();
    });
  }

  at::Tensor grad_x = at::empty({0}, opts);
  at::Tensor grad_weight = at::empty({0}, opts);
  at::Tensor grad_bias = at::empty({0}, opts);
  if (output_mask[2]) {
    grad_bias = at::sum(grad_z, {0}, false, at::toOpMathType(s.scalar_type())).to(s.scalar_type());
  }
  if (output_mask[1]) grad_weight = at::mm(x->t(), grad_z);
  if (output_mask[0]) grad_x = at::mm(grad_z, weight->t());
  return {grad_x, grad_weight, grad_bias, grad_teacher};
}

}  // namespace sgfd
