// Student projection fused with feature distillation: operator schemas, input checks, and the
// per-device registrations that check the inputs before calling a kernel.
#include "student_fd.h"

#include <ATen/ops/isfinite.h>
#include <torch/library.h>

#include <cmath>

#include "checks.h"

namespace sgfd {
namespace {

void check_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                   const at::Tensor& teacher, double negative_slope) {
  SGFD_CHECK_DIM(x, 2);
  SGFD_CHECK_DIM(weight, 2);
  SGFD_CHECK_DIM(bias, 1);
  SGFD_CHECK_DIM(teacher, 2);
  SGFD_CHECK_FLOATING(x);
  SGFD_CHECK_DTYPE(weight, x.scalar_type());
  SGFD_CHECK_DTYPE(bias, x.scalar_type());
  SGFD_CHECK_DTYPE(teacher, x.scalar_type());
  SGFD_CHECK_SAME_DEVICE(x, weight);
  SGFD_CHECK_SAME_DEVICE(x, bias);
  SGFD_CHECK_SAME_DEVICE(x, teacher);
  TORCH_CHECK(x.size(1) == weight.size(0), "student_fd: x has ", x.size(1),
              " features but weight expects ", weight.size(0), " (weight is [D, d])");
  TORCH_CHECK(bias.size(0) == weight.size(1), "student_fd: bias has ", bias.size(0),
              " entries, expected ", weight.size(1));
  TORCH_CHECK(teacher.size(0) == x.size(0) && teacher.size(1) == weight.size(1),
              "student_fd: teacher must be [", x.size(0), ", ", weight.size(1), "], got ",
              teacher.sizes());
  // The backward reads the activation's sign from the sign of s, which needs a non-negative slope.
  TORCH_CHECK(std::isfinite(negative_slope) && negative_slope >= 0.0,
              "student_fd: negative_slope must be finite and >= 0, got ", negative_slope);
}

void check_backward(const std::optional<at::Tensor>& grad_s,
                    const std::optional<at::Tensor>& grad_fd, const at::Tensor& s,
                    const at::Tensor& norm, const at::Tensor& teacher,
                    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& weight,
                    std::array<bool, 4> output_mask) {
  SGFD_CHECK_DIM(s, 2);
  SGFD_CHECK_DIM(norm, 1);
  SGFD_CHECK_FLOATING(s);
  SGFD_CHECK_DTYPE(teacher, s.scalar_type());
  SGFD_CHECK_SAME_DEVICE(s, norm);
  SGFD_CHECK_SAME_DEVICE(s, teacher);
  const int64_t B = s.size(0);
  TORCH_CHECK(norm.size(0) == B, "student_fd_backward: norm must have ", B, " entries");
  TORCH_CHECK(teacher.sizes() == s.sizes(),
              "student_fd_backward: teacher must have the shape of s ", s.sizes(), ", got ",
              teacher.sizes());
  if (grad_s.has_value()) {
    TORCH_CHECK(grad_s->sizes() == s.sizes(),
                "student_fd_backward: grad_s must have the shape of s");
    SGFD_CHECK_DTYPE(*grad_s, s.scalar_type());
    SGFD_CHECK_SAME_DEVICE(*grad_s, s);
  }
  if (grad_fd.has_value()) {
    TORCH_CHECK(grad_fd->numel() == 1, "student_fd_backward: grad_fd must hold one value");
    SGFD_CHECK_DTYPE(*grad_fd, s.scalar_type());
    SGFD_CHECK_SAME_DEVICE(*grad_fd, s);
  }
  if (output_mask[1]) {
    TORCH_CHECK(x.has_value(), "student_fd_backward: x is needed for the weight gradient");
    SGFD_CHECK_DIM(*x, 2);
    TORCH_CHECK(x->size(0) == B, "student_fd_backward: x must have ", B, " rows");
    SGFD_CHECK_DTYPE(*x, s.scalar_type());
    SGFD_CHECK_SAME_DEVICE(*x, s);
  }
  if (output_mask[0]) {
    TORCH_CHECK(weight.has_value(), "student_fd_backward: weight is needed for the x gradient");
    SGFD_CHECK_DIM(*weight, 2);
    TORCH_CHECK(weight->size(1) == s.size(1), "student_fd_backward: weight must have ", s.size(1),
                " columns");
    SGFD_CHECK_DTYPE(*weight, s.scalar_type());
    SGFD_CHECK_SAME_DEVICE(*weight, s);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& x,
                                                           const at::Tensor& weight,
                                                           const at::Tensor& bias,
                                                           const at::Tensor& teacher,
                                                           double negative_slope) {
  check_forward(x, weight, bias, teacher, negative_slope);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "student_fd: the CPU kernel supports float32 and float64, got ", x.scalar_type());
  return student_fd_cpu(x, weight, bias, teacher, negative_slope);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const std::optional<at::Tensor>& grad_s, const std::optional<at::Tensor>& grad_fd,
    const at::Tensor& s, const at::Tensor& norm, const at::Tensor& teacher,
    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& weight,
    double negative_slope, std::array<bool, 4> output_mask) {
  check_backward(grad_s, grad_fd, s, norm, teacher, x, weight, output_mask);
  TORCH_CHECK(s.scalar_type() == at::kFloat || s.scalar_type() == at::kDouble,
              "student_fd_backward: the CPU kernel supports float32 and float64, got ",
              s.scalar_type());
  return student_fd_backward_cpu(grad_s, grad_fd, s, norm, teacher, x, weight, negative_slope,
                                 output_mask);
}

#ifdef SGFD_EXT_WITH_CUDA
bool cuda_dtype_ok(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& x,
                                                            const at::Tensor& weight,
                                                            const at::Tensor& bias,
                                                            const at::Tensor& teacher,
                                                            double negative_slope) {
  check_forward(x, weight, bias, teacher, negative_slope);
  TORCH_CHECK(cuda_dtype_ok(x.scalar_type()),
              "student_fd: the CUDA kernel supports float32, bfloat16 and float64, got ",
              x.scalar_type());
  return student_fd_cuda(x, weight, bias, teacher, negative_slope);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const std::optional<at::Tensor>& grad_s, const std::optional<at::Tensor>& grad_fd,
    const at::Tensor& s, const at::Tensor& norm, const at::Tensor& teacher,
    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& weight,
    double negative_slope, std::array<bool, 4> output_mask) {
  check_backward(grad_s, grad_fd, s, norm, teacher, x, weight, output_mask);
  TORCH_CHECK(cuda_dtype_ok(s.scalar_type()),
              "student_fd_backward: the CUDA kernel supports float32, bfloat16 and float64, got ",
              s.scalar_type());
  return student_fd_backward_cuda(grad_s, grad_fd, s, norm, teacher, x, weight, negative_slope,
                                  output_mask);
}
#endif

}  // namespace

void student_fd_diagnose_nonfinite(const at::Tensor& s, const at::Tensor& teacher) {
  const at::Tensor bad_s = at::isfinite(s).all(1).logical_not().nonzero();
  TORCH_CHECK(bad_s.numel() == 0, "student_fd: x @ weight + bias is not finite in row ",
              bad_s[0].item<int64_t>(), "; x, weight or bias contains NaN or infinity");
  const at::Tensor bad_t = at::isfinite(teacher).all(1).logical_not().nonzero();
  TORCH_CHECK(bad_t.numel() == 0, "student_fd: teacher contains NaN or infinity in row ",
              bad_t[0].item<int64_t>());
}

}  // namespace sgfd

TORCH_LIBRARY_FRAGMENT(sgfd_ext, m) {
  m.def(
      "student_fd(Tensor x, Tensor weight, Tensor bias, Tensor teacher, float negative_slope=0.01)"
      " -> (Tensor, Tensor, Tensor)");
  m.def(
      "student_fd_backward(Tensor? grad_s, Tensor? grad_fd, Tensor s, Tensor norm, "
      "Tensor teacher, Tensor? x, Tensor? weight, float negative_slope, bool[4] output_mask)"
      " -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sgfd_ext, CPU, m) {
  m.impl("student_fd", &sgfd::forward_cpu);
  m.impl("student_fd_backward", &sgfd::backward_cpu);
}

#ifdef SGFD_EXT_WITH_CUDA
TORCH_LIBRARY_IMPL(sgfd_ext, CUDA, m) {
  m.impl("student_fd", &sgfd::forward_cuda);
  m.impl("student_fd_backward", &sgfd::backward_cuda);
}
#endif
