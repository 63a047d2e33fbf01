// Fused BPR loss: entry points of the CPU and CUDA kernels and the shared error reports. The
// inputs are checked in bpr.cpp before a kernel is called.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <tuple>

namespace sgfd {

// Returns (loss, sig): the scalar loss and sigmoid(s_neg - s_pos) of each triple, which is all the
// backward needs besides the tables. Raises on out-of-range indices and non-finite rows.
std::tuple<at::Tensor, at::Tensor> bpr_loss_cpu(const at::Tensor& user_table,
                                                const at::Tensor& item_table,
                                                const at::Tensor& users, const at::Tensor& pos,
                                                const at::Tensor& neg, double reg);

// Returns (grad_user_table, grad_item_table), dense; an output left out by output_mask is empty.
std::tuple<at::Tensor, at::Tensor> bpr_loss_backward_cpu(
    const at::Tensor& grad, const at::Tensor& sig, const at::Tensor& user_table,
    const at::Tensor& item_table, const at::Tensor& users, const at::Tensor& pos,
    const at::Tensor& neg, double reg, std::array<bool, 2> output_mask);

std::tuple<at::Tensor, at::Tensor> bpr_loss_cuda(const at::Tensor& user_table,
                                                 const at::Tensor& item_table,
                                                 const at::Tensor& users, const at::Tensor& pos,
                                                 const at::Tensor& neg, double reg);

std::tuple<at::Tensor, at::Tensor> bpr_loss_backward_cuda(
    const at::Tensor& grad, const at::Tensor& sig, const at::Tensor& user_table,
    const at::Tensor& item_table, const at::Tensor& users, const at::Tensor& pos,
    const at::Tensor& neg, double reg, std::array<bool, 2> output_mask);

// Raises the error for index `arg`[position] = value outside [0, rows) of `table`.
[[noreturn]] void bpr_index_error(const char* arg, int64_t position, int64_t value,
                                  const char* table, int64_t rows);

// Finds the first triple whose rows hold NaN or infinity and raises an error naming the table,
// the row and the batch position; returns when every row is finite (the loss overflowed).
void bpr_diagnose_nonfinite(const at::Tensor& user_table, const at::Tensor& item_table,
                            const at::Tensor& users, const at::Tensor& pos, const at::Tensor& neg);

}  // namespace sgfd
