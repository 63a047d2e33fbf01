// Student projection fused with feature distillation: entry points of the CPU and CUDA kernels.
// The inputs are checked in student_fd.cpp before a kernel is called.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>

namespace sgfd {

// Lower bound of the row norm, as in torch.nn.functional.normalize.
constexpr double kStudentNormEps = 1e-12;

// Returns (s, fd, norm): the normalised student rows, the mean squared distance to the teacher and
// the unclamped L2 norm of each activated row (kept for the backward).
std::tuple<at::Tensor, at::Tensor, at::Tensor> student_fd_cpu(const at::Tensor& x,
                                                              const at::Tensor& weight,
                                                              const at::Tensor& bias,
                                                              const at::Tensor& teacher,
                                                              double negative_slope);

// Returns (grad_x, grad_weight, grad_bias, grad_teacher); an output left out by output_mask is an
// empty tensor.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> student_fd_backward_cpu(
    const std::optional<at::Tensor>& grad_s, const std::optional<at::Tensor>& grad_fd,
    const at::Tensor& s, const at::Tensor& norm, const at::Tensor& teacher,
    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& weight,
    double negative_slope, std::array<bool, 4> output_mask);

std::tuple<at::Tensor, at::Tensor, at::Tensor> student_fd_cuda(const at::Tensor& x,
                                                               const at::Tensor& weight,
                                                               const at::Tensor& bias,
                                                               const at::Tensor& teacher,
                                                               double negative_slope);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> student_fd_backward_cuda(
    const std::optional<at::Tensor>& grad_s, const std::optional<at::Tensor>& grad_fd,
    const at::Tensor& s, const at::Tensor& norm, const at::Tensor& teacher,
    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& weight,
    double negative_slope, std::array<bool, 4> output_mask);

// Raises a clear error when the forward found non-finite values: rows of s that are not finite
// come from x, weight or bias; otherwise a non-finite teacher is named. Called only when fd is not
// finite, so the common path costs nothing.
void student_fd_diagnose_nonfinite(const at::Tensor& s, const at::Tensor& teacher);

}  // namespace sgfd
