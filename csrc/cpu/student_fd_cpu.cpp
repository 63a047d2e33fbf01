// CPU kernels of the student projection with feature distillation. Each direction runs the matrix
// products through ATen (MKL) and one fused, row-parallel pass over the small [B, d] tensors.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/scalar_tensor.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/loops.h"
#include "student_fd.h"

namespace sgfd {
namespace {

// Rows summed in the input precision before the bias gradient is flushed to double.
constexpr int64_t kFlushRows = 64;

// In place on one row: z + bias -> leaky ReLU -> divide by the clamped L2 norm. Returns the
// squared distance of the normalised row to the teacher row; writes the unclamped norm.
template <typename scalar_t>
double forward_row(scalar_t* row, const scalar_t* bias, const scalar_t* teacher, int64_t d,
                   scalar_t slope, scalar_t* norm_out) {
  using Vec = at::vec::Vectorized<scalar_t>;
  const Vec zero(0), vslope(slope);
  Vec sq(0);
  for (int64_t j = 0; j < d; j += Vec::size()) {
    const int64_t n = std::min<int64_t>(Vec::size(), d - j);
    const Vec z = load_n<Vec>(row + j, n) + load_n<Vec>(bias + j, n);
    const Vec a = Vec::blendv(z * vslope, z, z > zero);
    store_n(a, row + j, n);
    sq = at::vec::fmadd(a, a, sq);
  }
  const scalar_t norm = std::sqrt(lane_sum(sq));
  *norm_out = norm;

  const Vec denom(std::max(norm, static_cast<scalar_t>(kStudentNormEps)));
  Vec dist(0);
  for (int64_t j = 0; j < d; j += Vec::size()) {
    const int64_t n = std::min<int64_t>(Vec::size(), d - j);
    const Vec s = load_n<Vec>(row + j, n) / denom;
    store_n(s, row + j, n);
    const Vec diff = s - load_n<Vec>(teacher + j, n);
    dist = at::vec::fmadd(diff, diff, dist);
  }
  return static_cast<double>(lane_sum(dist));
}

template <typename scalar_t>
double forward_epilogue(at::Tensor& s, at::Tensor& norm, const at::Tensor& bias,
                        const at::Tensor& teacher, double negative_slope) {
  const int64_t B = s.size(0), d = s.size(1);
  scalar_t* s_ptr = s.data_ptr<scalar_t>();
  scalar_t* norm_ptr = norm.data_ptr<scalar_t>();
  const scalar_t* b_ptr = bias.data_ptr<scalar_t>();
  const scalar_t* t_ptr = teacher.data_ptr<scalar_t>();
  const auto slope = static_cast<scalar_t>(negative_slope);

  std::vector<double> partial(std::max<int64_t>(1, at::get_num_threads()), 0.0);
  const int64_t chunks = for_each_chunk(B, [&](int64_t c, int64_t begin, int64_t end) {
    double acc = 0.0;
    for (int64_t i = begin; i < end; ++i) {
      acc += forward_row(s_ptr + i * d, b_ptr, t_ptr + i * d, d, slope, norm_ptr + i);
    }
    partial[c] = acc;
  });

  double total = 0.0;
  for (int64_t c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

// Per-row backward shared by all rows: the coefficients that do not depend on the row.
template <typename scalar_t>
struct BackwardRow {
  const scalar_t* grad_s;  // null when s gets no gradient
  scalar_t fd_scale;       // d fd / d s = fd_scale * (s - teacher)
  scalar_t slope;
  int64_t d;
};

// One row: grad of s (from grad_s and fd) -> normalize backward -> leaky ReLU backward, writing
// grad_z (when not null) and grad_teacher (when not null). Adds grad_z to the running bias
// gradient.
template <typename scalar_t>
void backward_row(const BackwardRow<scalar_t>& p, int64_t i, const scalar_t* s,
                  const scalar_t* teacher, scalar_t norm, scalar_t* grad_z, scalar_t* grad_teacher,
                  scalar_t* bias_acc) {
  using Vec = at::vec::Vectorized<scalar_t>;
  const int64_t d = p.d;
  const scalar_t* gs_row = p.grad_s ? p.grad_s + i * d : nullptr;
  const Vec zero(0), vscale(p.fd_scale), vslope(p.slope);

  Vec dot(0);
  for (int64_t j = 0; j < d; j += Vec::size()) {
    const int64_t n = std::min<int64_t>(Vec::size(), d - j);
    const Vec sv = load_n<Vec>(s + j, n);
    const Vec fd_grad = vscale * (sv - load_n<Vec>(teacher + j, n));
    const Vec gs = gs_row ? load_n<Vec>(gs_row + j, n) + fd_grad : fd_grad;
    if (grad_teacher) store_n(zero - fd_grad, grad_teacher + j, n);
    dot = at::vec::fmadd(sv, gs, dot);
  }
  if (!grad_z) return;

  // Below the clamp the norm is a constant and the row is only scaled.
  const bool clamped = !(norm >= static_cast<scalar_t>(kStudentNormEps));
  const Vec vdot(clamped ? scalar_t(0) : lane_sum(dot));
  const Vec denom(clamped ? static_cast<scalar_t>(kStudentNormEps) : norm);
  for (int64_t j = 0; j < d; j += Vec::size()) {
    const int64_t n = std::min<int64_t>(Vec::size(), d - j);
    const Vec sv = load_n<Vec>(s + j, n);
    const Vec fd_grad = vscale * (sv - load_n<Vec>(teacher + j, n));
    const Vec gs = gs_row ? load_n<Vec>(gs_row + j, n) + fd_grad : fd_grad;
    const Vec ga = (gs - sv * vdot) / denom;
    const Vec gz = Vec::blendv(ga * vslope, ga, sv > zero);
    store_n(gz, grad_z + j, n);
    store_n(load_n<Vec>(bias_acc + j, n) + gz, bias_acc + j, n);
  }
}

template <typename scalar_t>
void backward_epilogue(const BackwardRow<scalar_t>& p, const at::Tensor& s, const at::Tensor& norm,
                       const at::Tensor& teacher, const at::Tensor& grad_z,
                       at::Tensor* grad_teacher, at::Tensor* grad_bias) {
  const int64_t B = s.size(0), d = s.size(1);
  const scalar_t* s_ptr = s.data_ptr<scalar_t>();
  const scalar_t* norm_ptr = norm.data_ptr<scalar_t>();
  const scalar_t* t_ptr = teacher.data_ptr<scalar_t>();
  scalar_t* gz_ptr = grad_z.defined() ? grad_z.data_ptr<scalar_t>() : nullptr;
  scalar_t* gt_ptr = grad_teacher ? grad_teacher->data_ptr<scalar_t>() : nullptr;

  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  std::vector<double> bias_partial(gz_ptr ? threads * d : 0, 0.0);
  const int64_t chunks = for_each_chunk(B, [&](int64_t c, int64_t begin, int64_t end) {
    std::vector<scalar_t> acc(gz_ptr ? d : 0, scalar_t(0));
    double* out = bias_partial.data() + c * d;
    for (int64_t i = begin; i < end; ++i) {
      backward_row(p, i, s_ptr + i * d, t_ptr + i * d, norm_ptr[i],
                   gz_ptr ? gz_ptr + i * d : nullptr, gt_ptr ? gt_ptr + i * d : nullptr,
                   acc.data());
      if (gz_ptr && ((i - begin + 1) % kFlushRows == 0 || i + 1 == end)) {
        for (int64_t j = 0; j < d; ++j) {
          out[j] += static_cast<double>(acc[j]);
          acc[j] = scalar_t(0);
        }
      }
    }
  });

  if (grad_bias) {
    scalar_t* gb = grad_bias->data_ptr<scalar_t>();
    for (int64_t j = 0; j < d; ++j) {
      double total = 0.0;
      for (int64_t c = 0; c < chunks; ++c) total += bias_partial[c * d + j];
      gb[j] = static_cast<scalar_t>(total);
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> student_fd_cpu(const at::Tensor& x,
                                                              const at::Tensor& weight,
                                                              const at::Tensor& bias,
                                                              const at::Tensor& teacher,
                                                              double negative_slope) {
  const int64_t B = x.size(0), d = weight.size(1);
  at::Tensor s = at::mm(x, weight);
  if (!s.is_contiguous()) s = s.contiguous();
  at::Tensor norm = at::empty({B}, x.options());
  const at::Tensor b = bias.contiguous();
  const at::Tensor t = teacher.contiguous();

  double sum = 0.0;
  if (B > 0 && d > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "student_fd_cpu", [&] {
      sum = forward_epilogue<scalar_t>(s, norm, b, t, negative_slope);
    });
  } else {
    norm.zero_();
  }
  if (!std::isfinite(sum)) student_fd_diagnose_nonfinite(s, t);

  const double fd = (B * d > 0) ? sum / static_cast<double>(B * d) : 0.0;
  return {s, at::scalar_tensor(fd, x.options()), norm};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> student_fd_backward_cpu(
    const std::optional<at::Tensor>& grad_s, const std::optional<at::Tensor>& grad_fd,
    const at::Tensor& s_in, const at::Tensor& norm_in, const at::Tensor& teacher_in,
    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& weight,
    double negative_slope, std::array<bool, 4> output_mask) {
  const int64_t B = s_in.size(0), d = s_in.size(1);
  const auto opts = s_in.options();
  const bool need_z = output_mask[0] || output_mask[1] || output_mask[2];
  const at::Tensor s = s_in.contiguous();
  const at::Tensor norm = norm_in.contiguous();
  const at::Tensor teacher = teacher_in.contiguous();
  at::Tensor gs;
  if (grad_s.has_value()) gs = grad_s->contiguous();
  const double gfd = grad_fd.has_value() ? grad_fd->item<double>() : 0.0;
  const double fd_scale = (B * d > 0) ? 2.0 * gfd / static_cast<double>(B * d) : 0.0;

  at::Tensor grad_z = need_z ? at::empty({B, d}, opts) : at::empty({0}, opts);
  at::Tensor grad_teacher = output_mask[3] ? at::empty({B, d}, opts) : at::empty({0}, opts);
  at::Tensor grad_bias = output_mask[2] ? at::empty({d}, opts) : at::empty({0}, opts);

  if ((need_z || output_mask[3]) && B > 0 && d > 0) {
    AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "student_fd_backward_cpu", [&] {
      const BackwardRow<scalar_t> p{gs.defined() ? gs.data_ptr<scalar_t>() : nullptr,
                                    static_cast<scalar_t>(fd_scale),
                                    static_cast<scalar_t>(negative_slope), d};
      backward_epilogue<scalar_t>(p, s, norm, teacher, need_z ? grad_z : at::Tensor(),
                                  output_mask[3] ? &grad_teacher : nullptr,
                                  output_mask[2] ? &grad_bias : nullptr);
    });
  } else if (output_mask[2]) {
    grad_bias.zero_();  // an empty batch
  }

  at::Tensor grad_x = at::empty({0}, opts);
  at::Tensor grad_weight = at::empty({0}, opts);
  if (output_mask[1]) grad_weight = at::mm(x->t(), grad_z);
  if (output_mask[0]) grad_x = at::mm(grad_z, weight->t());
  return {grad_x, grad_weight, grad_bias, grad_teacher};
}

}  // namespace sgfd
