// Schema of maml_topk and the argument checks that its CPU and CUDA kernels share.
#include "maml_topk.h"

#include <ATen/ops/aminmax.h>
#include <ATen/ops/diff.h>
#include <torch/library.h>

#include "checks.h"

namespace sgfd_ext {
namespace {

void check_exclude(const at::Tensor& indptr, const at::Tensor& indices, int64_t rows,
                   int64_t cols) {
  SGFD_CHECK_DIM(indptr, 1);
  SGFD_CHECK_DIM(indices, 1);
  SGFD_CHECK_DTYPE(indptr, at::kLong);
  SGFD_CHECK_DTYPE(indices, at::kLong);
  TORCH_CHECK(indptr.numel() == rows + 1, "exclude_indptr must have one entry per user plus one (",
              rows + 1, "), got ", indptr.numel());

  const int64_t first = indptr[0].item<int64_t>();
  const int64_t last = indptr[rows].item<int64_t>();
  TORCH_CHECK(first == 0, "exclude_indptr must start at 0, got ", first);
  TORCH_CHECK(last == indices.numel(), "exclude_indptr must end at the number of indices (",
              indices.numel(), "), got ", last);
  if (rows > 0) {
    TORCH_CHECK(at::diff(indptr).ge(0).all().item<bool>(), "exclude_indptr must be non-decreasing");
  }
  if (indices.numel() > 0) {
    auto [lo, hi] = at::aminmax(indices);
    TORCH_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < cols,
                "exclude_indices must lie in [0, ", cols, "), got values in [",
                lo.item<int64_t>(), ", ", hi.item<int64_t>(), "]");
  }
}

}  // namespace

void check_maml_topk_inputs(const at::Tensor& user_hidden, const at::Tensor& user_emb,
                            const at::Tensor& item_hidden, const at::Tensor& item_emb,
                            const at::Tensor& w2, const at::Tensor& b2,
                            const at::Tensor& exclude_indptr, const at::Tensor& exclude_indices,
                            int64_t k) {
  SGFD_CHECK_DIM(user_hidden, 2);
  SGFD_CHECK_DIM(user_emb, 2);
  SGFD_CHECK_DIM(item_hidden, 2);
  SGFD_CHECK_DIM(item_emb, 2);
  SGFD_CHECK_DIM(w2, 2);
  SGFD_CHECK_DIM(b2, 1);
  const auto dtype = user_emb.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "user_emb must be float32 or float64, got ", dtype);
  SGFD_CHECK_DTYPE(user_hidden, dtype);
  SGFD_CHECK_DTYPE(item_hidden, dtype);
  SGFD_CHECK_DTYPE(item_emb, dtype);
  SGFD_CHECK_DTYPE(w2, dtype);
  SGFD_CHECK_DTYPE(b2, dtype);
  for (const at::Tensor* t : {&user_hidden, &item_hidden, &item_emb, &w2, &b2, &exclude_indptr,
                              &exclude_indices}) {
    TORCH_CHECK(t->device() == user_emb.device(),
                "every argument must be on the device of user_emb (", user_emb.device(),
                "), got one on ", t->device());
  }

  const int64_t n_users = user_emb.size(0), dim = user_emb.size(1);
  const int64_t n_items = item_emb.size(0), hidden = w2.size(1);
  TORCH_CHECK(dim >= 1 && hidden >= 1, "embedding and attention sizes must be positive");
  TORCH_CHECK(user_hidden.size(0) == n_users && user_hidden.size(1) == hidden,
              "user_hidden must be [", n_users, ", ", hidden, "], got ", user_hidden.sizes());
  TORCH_CHECK(item_hidden.size(0) == n_items && item_hidden.size(1) == hidden,
              "item_hidden must be [", n_items, ", ", hidden, "], got ", item_hidden.sizes());
  TORCH_CHECK(item_emb.size(1) == dim, "item_emb must have ", dim, " columns, got ",
              item_emb.size(1));
  TORCH_CHECK(w2.size(0) == dim && b2.size(0) == dim, "w2 must be [", dim, ", ", hidden,
              "] and b2 [", dim, "], got ", w2.sizes(), " and ", b2.sizes());
  TORCH_CHECK(k >= 1, "k must be at least 1, got ", k);

  check_exclude(exclude_indptr, exclude_indices, n_users, n_items);
  SGFD_CHECK_FINITE(user_hidden);
  SGFD_CHECK_FINITE(user_emb);
  SGFD_CHECK_FINITE(item_hidden);
  SGFD_CHECK_FINITE(item_emb);
  SGFD_CHECK_FINITE(w2);
  SGFD_CHECK_FINITE(b2);
}

}  // namespace sgfd_ext

TORCH_LIBRARY_FRAGMENT(sgfd_ext, m) {
  m.def(
      "maml_topk(Tensor user_hidden, Tensor user_emb, Tensor item_hidden, Tensor item_emb, "
      "Tensor w2, Tensor b2, Tensor exclude_indptr, Tensor exclude_indices, int k) -> (Tensor "
      "top_items, Tensor top_scores)");
}
