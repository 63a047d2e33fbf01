// Fused BPR loss: operator schemas, input checks, and the per-device registrations that check
// the inputs before calling a kernel.
#include "bpr.h"

#include <ATen/ops/isfinite.h>
#include <torch/library.h>

#include <cmath>

#include "checks.h"

namespace sgfd {
namespace {

void check_inputs(const at::Tensor& user_table, const at::Tensor& item_table,
                  const at::Tensor& users, const at::Tensor& pos, const at::Tensor& neg) {
  SGFD_CHECK_DIM(user_table, 2);
  SGFD_CHECK_DIM(item_table, 2);
  SGFD_CHECK_FLOATING(user_table);
  SGFD_CHECK_DTYPE(item_table, user_table.scalar_type());
  SGFD_CHECK_SAME_DEVICE(user_table, item_table);
  TORCH_CHECK(user_table.size(1) == item_table.size(1),
              "bpr_loss: user_table and item_table must have the same width, got ",
              user_table.size(1), " and ", item_table.size(1));
  SGFD_CHECK_DIM(users, 1);
  SGFD_CHECK_DIM(pos, 1);
  SGFD_CHECK_DIM(neg, 1);
  SGFD_CHECK_DTYPE(users, at::kLong);
  SGFD_CHECK_DTYPE(pos, at::kLong);
  SGFD_CHECK_DTYPE(neg, at::kLong);
  SGFD_CHECK_SAME_DEVICE(users, user_table);
  SGFD_CHECK_SAME_DEVICE(pos, user_table);
  SGFD_CHECK_SAME_DEVICE(neg, user_table);
  TORCH_CHECK(users.size(0) == pos.size(0) && users.size(0) == neg.size(0),
              "bpr_loss: users, pos and neg must have the same length, got ", users.size(0), ", ",
              pos.size(0), " and ", neg.size(0));
}

void check_reg(double reg) {
  TORCH_CHECK(std::isfinite(reg), "bpr_loss: reg must be finite, got ", reg);
}

void check_grad_and_sig(const at::Tensor& grad, const at::Tensor& sig, const at::Tensor& users) {
  TORCH_CHECK(grad.numel() == 1, "bpr_loss_backward: grad must hold one value");
  SGFD_CHECK_DIM(sig, 1);
  TORCH_CHECK(sig.size(0) == users.size(0), "bpr_loss_backward: sig must have ", users.size(0),
              " entries, got ", sig.size(0));
  SGFD_CHECK_SAME_DEVICE(grad, users);
  SGFD_CHECK_SAME_DEVICE(sig, users);
}

// The dtypes each kernel is built for: float32 and float64 on both devices, bfloat16 on CUDA.
void check_kernel_dtype(const char* op, const at::Tensor& table, bool cuda) {
  const at::ScalarType t = table.scalar_type();
  const bool ok = t == at::kFloat || t == at::kDouble || (cuda && t == at::kBFloat16);
  TORCH_CHECK(ok, op, ": the ",
              cuda ? "CUDA kernel supports float32, bfloat16 and float64"
                   : "CPU kernel supports float32 and float64",
              ", got ", t);
}

void check_forward(const at::Tensor& user_table, const at::Tensor& item_table,
                   const at::Tensor& users, const at::Tensor& pos, const at::Tensor& neg,
                   double reg, bool cuda) {
  check_inputs(user_table, item_table, users, pos, neg);
  check_reg(reg);
  check_kernel_dtype("bpr_loss", user_table, cuda);
}

void check_backward(const at::Tensor& grad, const at::Tensor& sig,
                         const at::Tensor& user_table, const at::Tensor& item_table,
                         const at::Tensor& users, const at::Tensor& pos, const at::Tensor& neg,
                         double reg, bool cuda) {
  check_inputs(user_table, item_table, users, pos, neg);
  check_reg(reg);
  check_grad_and_sig(grad, sig, users);
  check_kernel_dtype("bpr_loss_backward", user_table, cuda);
}

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& user_table,
                                               const at::Tensor& item_table,
                                               const at::Tensor& users, const at::Tensor& pos,
                                               const at::Tensor& neg, double reg) {
  check_forward(user_table, item_table, users, pos, neg, reg, /*cuda=*/false);
  return bpr_loss_cpu(user_table, item_table, users, pos, neg, reg);
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad, const at::Tensor& sig,
                                                const at::Tensor& user_table,
                                                const at::Tensor& item_table,
                                                const at::Tensor& users, const at::Tensor& pos,
                                                const at::Tensor& neg, double reg,
                                                std::array<bool, 2> output_mask) {
  check_backward(grad, sig, user_table, item_table, users, pos, neg, reg, /*cuda=*/false);
  return bpr_loss_backward_cpu(grad, sig, user_table, item_table, users, pos, neg, reg,
                               output_mask);
}

#ifdef SGFD_EXT_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& user_table,
                                                const at::Tensor& item_table,
                                                const at::Tensor& users, const at::Tensor& pos,
                                                const at::Tensor& neg, double reg) {
  check_forward(user_table, item_table, users, pos, neg, reg, /*cuda=*/true);
  return bpr_loss_cuda(user_table, item_table, users, pos, neg, reg);
}

std::tuple<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad, const at::Tensor& sig,
                                                 const at::Tensor& user_table,
                                                 const at::Tensor& item_table,
                                                 const at::Tensor& users, const at::Tensor& pos,
                                                 const at::Tensor& neg, double reg,
                                                 std::array<bool, 2> output_mask) {
  check_backward(grad, sig, user_table, item_table, users, pos, neg, reg, /*cuda=*/true);
  return bpr_loss_backward_cuda(grad, sig, user_table, item_table, users, pos, neg, reg,
                                output_mask);
}
#endif

}  // namespace

void bpr_index_error(const char* arg, int64_t position, int64_t value, const char* table,
                     int64_t rows) {
  C10_THROW_ERROR(IndexError,
                  c10::str("bpr_loss: ", arg, "[", position, "] = ", value, " is out of range for ",
                           table, " with ", rows, " rows (valid: 0 to ", rows - 1, ")"));
}

void bpr_diagnose_nonfinite(const at::Tensor& user_table, const at::Tensor& item_table,
                            const at::Tensor& users, const at::Tensor& pos, const at::Tensor& neg) {
  struct Side {
    const at::Tensor& table;
    const at::Tensor& index;
    const char* table_name;
    const char* index_name;
  };
  const Side sides[] = {{user_table, users, "user_table", "users"},
                        {item_table, pos, "item_table", "pos"},
                        {item_table, neg, "item_table", "neg"}};
  for (const Side& side : sides) {
    const at::Tensor bad =
        at::isfinite(side.table.index_select(0, side.index)).all(1).logical_not().nonzero();
    if (bad.numel() == 0) continue;
    const int64_t position = bad[0].item<int64_t>();
    TORCH_CHECK(false, "bpr_loss: ", side.table_name, " row ", side.index[position].item<int64_t>(),
                " (", side.index_name, "[", position, "]) contains NaN or infinity");
  }
}

}  // namespace sgfd

TORCH_LIBRARY_FRAGMENT(sgfd_ext, m) {
  m.def(
      "bpr_loss(Tensor user_table, Tensor item_table, Tensor users, Tensor pos, Tensor neg, "
      "float reg) -> (Tensor, Tensor)");
  m.def(
      "bpr_loss_backward(Tensor grad, Tensor sig, Tensor user_table, Tensor item_table, "
      "Tensor users, Tensor pos, Tensor neg, float reg, bool[2] output_mask) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sgfd_ext, CPU, m) {
  m.impl("bpr_loss", &sgfd::forward_cpu);
  m.impl("bpr_loss_backward", &sgfd::backward_cpu);
}

#ifdef SGFD_EXT_WITH_CUDA
TORCH_LIBRARY_IMPL(sgfd_ext, CUDA, m) {
  m.impl("bpr_loss", &sgfd::forward_cuda);
  m.impl("bpr_loss_backward", &sgfd::backward_cuda);
}
#endif
