// Schema of topk_eval and the argument checks that its CPU and CUDA kernels share.
#include "topk_eval.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/diff.h>
#include <ATen/ops/isfinite.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "checks.h"

namespace sgfd_ext {
namespace {

struct CsrSummary {
  int64_t first;
  int64_t last;
  bool non_decreasing;
  int64_t min_index;
  int64_t max_index;
};

// CPU tensors are read in plain loops: small ATen reductions would each start a parallel
// region, which costs more than the work on a busy machine.
CsrSummary summarize_csr(const at::Tensor& indptr, const at::Tensor& indices) {
  CsrSummary out{0, 0, true, 0, 0};
  if (indptr.is_cpu()) {
    const at::Tensor ptr = indptr.contiguous();
    const at::Tensor idx = indices.contiguous();
    const int64_t* p = ptr.const_data_ptr<int64_t>();
    const int64_t* x = idx.const_data_ptr<int64_t>();
    const int64_t n_ptr = ptr.numel();
    out.first = p[0];
    out.last = p[n_ptr - 1];
    for (int64_t r = 1; r < n_ptr; ++r) {
      out.non_decreasing &= p[r] >= p[r - 1];
    }
    if (idx.numel() > 0) {
      const auto [lo, hi] = std::minmax_element(x, x + idx.numel());
      out.min_index = *lo;
      out.max_index = *hi;
    }
    return out;
  }
  out.first = indptr[0].item<int64_t>();
  out.last = indptr[-1].item<int64_t>();
  out.non_decreasing = indptr.numel() < 2 || at::diff(indptr).ge(0).all().item<bool>();
  if (indices.numel() > 0) {
    const auto [lo, hi] = at::aminmax(indices);
    out.min_index = lo.item<int64_t>();
    out.max_index = hi.item<int64_t>();
  }
  return out;
}

void check_csr(const at::Tensor& indptr, const at::Tensor& indices, int64_t rows, int64_t cols,
               const char* name) {
  TORCH_CHECK(indptr.dim() == 1 && indptr.scalar_type() == at::kLong, name,
              "_indptr must be a 1-D int64 tensor, got ", indptr.dim(), "-D ",
              indptr.scalar_type());
  TORCH_CHECK(indices.dim() == 1 && indices.scalar_type() == at::kLong, name,
              "_indices must be a 1-D int64 tensor, got ", indices.dim(), "-D ",
              indices.scalar_type());
  TORCH_CHECK(indptr.numel() == rows + 1, name, "_indptr must have one entry per user plus one (",
              rows + 1, "), got ", indptr.numel());

  const CsrSummary csr = summarize_csr(indptr, indices);
  TORCH_CHECK(csr.first == 0, name, "_indptr must start at 0, got ", csr.first);
  TORCH_CHECK(csr.last == indices.numel(), name, "_indptr must end at the number of indices (",
              indices.numel(), "), got ", csr.last);
  TORCH_CHECK(csr.non_decreasing, name, "_indptr must be non-decreasing");
  TORCH_CHECK(indices.numel() == 0 || (csr.min_index >= 0 && csr.max_index < cols), name,
              "_indices must lie in [0, ", cols, "), got values in [", csr.min_index, ", ",
              csr.max_index, "]");
}

bool all_finite(const at::Tensor& t) {
  if (!t.is_cpu()) {
    return at::isfinite(t).all().item<bool>();
  }
  const at::Tensor c = t.contiguous();
  return AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "all_finite", [&] {
    const scalar_t* x = c.const_data_ptr<scalar_t>();
    bool finite = true;
    for (int64_t i = 0; i < c.numel(); ++i) {
      finite &= std::abs(x[i]) <= std::numeric_limits<scalar_t>::max();
    }
    return finite;
  });
}

}  // namespace

int64_t check_topk_eval_inputs(const at::Tensor& user_emb, const at::Tensor& item_emb,
                               const at::Tensor& exclude_indptr, const at::Tensor& exclude_indices,
                               const at::Tensor& target_indptr, const at::Tensor& target_indices,
                               c10::IntArrayRef ks) {
  SGFD_CHECK_DIM(user_emb, 2);
  SGFD_CHECK_DIM(item_emb, 2);
  TORCH_CHECK(user_emb.scalar_type() == at::kFloat || user_emb.scalar_type() == at::kDouble,
              "user_emb must be float32 or float64, got ", user_emb.scalar_type());
  TORCH_CHECK(item_emb.scalar_type() == user_emb.scalar_type(),
              "item_emb must have the dtype of user_emb (", user_emb.scalar_type(), "), got ",
              item_emb.scalar_type());
  TORCH_CHECK(user_emb.size(1) == item_emb.size(1),
              "user_emb and item_emb must have the same embedding size, got ", user_emb.size(1),
              " and ", item_emb.size(1));
  SGFD_CHECK_SAME_DEVICE(user_emb, item_emb);
  SGFD_CHECK_SAME_DEVICE(user_emb, exclude_indptr);
  SGFD_CHECK_SAME_DEVICE(user_emb, exclude_indices);
  SGFD_CHECK_SAME_DEVICE(user_emb, target_indptr);
  SGFD_CHECK_SAME_DEVICE(user_emb, target_indices);

  const int64_t n_users = user_emb.size(0);
  const int64_t n_items = item_emb.size(0);
  TORCH_CHECK(!ks.empty(), "ks must hold at least one K");
  int64_t max_k = 0;
  for (const int64_t k : ks) {
    TORCH_CHECK(k >= 1 && k <= n_items, "every K must lie in [1, number of items = ", n_items,
                "], got ", k);
    max_k = std::max(max_k, k);
  }

  check_csr(exclude_indptr, exclude_indices, n_users, n_items, "exclude");
  check_csr(target_indptr, target_indices, n_users, n_items, "target");
  TORCH_CHECK(all_finite(user_emb), "user_emb contains NaN or infinite values");
  TORCH_CHECK(all_finite(item_emb), "item_emb contains NaN or infinite values");
  return max_k;
}

}  // namespace sgfd_ext

TORCH_LIBRARY_FRAGMENT(sgfd_ext, m) {
  m.def(
      "topk_eval(Tensor user_emb, Tensor item_emb, Tensor exclude_indptr, Tensor exclude_indices, "
      "Tensor target_indptr, Tensor target_indices, int[] ks) -> (Tensor top_items, Tensor "
      "metrics)");
}
