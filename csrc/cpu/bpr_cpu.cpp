// CPU kernels of the fused BPR loss. The forward gathers each triple's rows once; the backward
// groups the batch by destination row, so every row of the dense gradients is written exactly
// once by one thread (no races, no separate zero fill, reproducible sums).
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/to.h>

#include <cmath>
#include <vector>

#include "bpr.h"
#include "cpu/loops.h"

namespace sgfd {
namespace {

constexpr int64_t kRowsPerTaskBackward = 256;

void check_range(const at::Tensor& index, const char* arg, const char* table, int64_t rows) {
  const int64_t* idx = index.data_ptr<int64_t>();
  for (int64_t b = 0; b < index.size(0); ++b) {
    if (idx[b] < 0 || idx[b] >= rows) bpr_index_error(arg, b, idx[b], table, rows);
  }
}

// softplus(y) = log(1 + exp(y)) and sigmoid(y), both without overflow.
double softplus(double y) { return std::max(y, 0.0) + std::log1p(std::exp(-std::abs(y))); }
double sigmoid(double y) {
  const double e = std::exp(-std::abs(y));
  return y >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

template <typename scalar_t>
double forward_kernel(const at::Tensor& ut, const at::Tensor& it, const int64_t* users,
                      const int64_t* pos, const int64_t* neg, int64_t B, double reg,
                      scalar_t* sig) {
  using Vec = at::vec::Vectorized<scalar_t>;
  const int64_t d = ut.size(1);
  const scalar_t* u_ptr = ut.data_ptr<scalar_t>();
  const scalar_t* i_ptr = it.data_ptr<scalar_t>();

  std::vector<double> partial(std::max<int64_t>(1, at::get_num_threads()), 0.0);
  const int64_t chunks = for_each_chunk(B, [&](int64_t c, int64_t begin, int64_t end) {
    double acc = 0.0;
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* u = u_ptr + users[b] * d;
      const scalar_t* p = i_ptr + pos[b] * d;
      const scalar_t* q = i_ptr + neg[b] * d;
      Vec diff(0), sq(0);
      for (int64_t j = 0; j < d; j += Vec::size()) {
        const int64_t n = std::min<int64_t>(Vec::size(), d - j);
        const Vec uv = load_n<Vec>(u + j, n), pv = load_n<Vec>(p + j, n);
        const Vec qv = load_n<Vec>(q + j, n);
        diff = at::vec::fmadd(uv, pv - qv, diff);
        sq = at::vec::fmadd(uv, uv, at::vec::fmadd(pv, pv, at::vec::fmadd(qv, qv, sq)));
      }
      const double x = static_cast<double>(lane_sum(diff));
      sig[b] = static_cast<scalar_t>(sigmoid(-x));
      acc += softplus(-x) + 0.5 * reg * static_cast<double>(lane_sum(sq));
    }
    partial[c] = acc;
  });

  double total = 0.0;
  for (int64_t c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

// Batch entries grouped by destination row (a counting sort): the entries of row r are
// order[offsets[r]] .. order[offsets[r + 1] - 1], in batch order.
struct RowGroups {
  std::vector<int64_t> offsets;
  std::vector<int64_t> order;
};

RowGroups group_by_row(int64_t rows, const std::vector<const int64_t*>& indices, int64_t B) {
  RowGroups g;
  g.offsets.assign(rows + 1, 0);
  g.order.resize(indices.size() * B);
  for (const int64_t* idx : indices) {
    for (int64_t b = 0; b < B; ++b) ++g.offsets[idx[b] + 1];
  }
  for (int64_t r = 0; r < rows; ++r) g.offsets[r + 1] += g.offsets[r];
  std::vector<int64_t> cursor(g.offsets.begin(), g.offsets.end() - 1);
  for (size_t k = 0; k < indices.size(); ++k) {
    for (int64_t b = 0; b < B; ++b) g.order[cursor[indices[k][b]]++] = k * B + b;
  }
  return g;
}

// grad[r] = count(r) * reg_scale * table[r] + the contributions of the entries of row r, which
// source(entry, column, width, acc) adds to acc. Rows without entries become zero.
template <typename scalar_t, typename Source>
void scatter_rows(scalar_t* grad, const scalar_t* table, int64_t rows, int64_t d,
                  const RowGroups& g, scalar_t reg_scale, const Source& source) {
  using Vec = at::vec::Vectorized<scalar_t>;
  at::parallel_for(0, rows, kRowsPerTaskBackward, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t first = g.offsets[r], last = g.offsets[r + 1];
      scalar_t* out = grad + r * d;
      const Vec vreg(reg_scale * static_cast<scalar_t>(last - first));
      for (int64_t j = 0; j < d; j += Vec::size()) {
        const int64_t n = std::min<int64_t>(Vec::size(), d - j);
        if (first == last) {
          store_n(Vec(0), out + j, n);
          continue;
        }
        Vec acc = vreg * load_n<Vec>(table + r * d + j, n);
        for (int64_t k = first; k < last; ++k) acc = source(g.order[k], j, n, acc);
        store_n(acc, out + j, n);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(double grad, const scalar_t* sig, const at::Tensor& ut, const at::Tensor& it,
                     const int64_t* users, const int64_t* pos, const int64_t* neg, int64_t B,
                     double reg, at::Tensor* grad_user, at::Tensor* grad_item) {
  using Vec = at::vec::Vectorized<scalar_t>;
  const int64_t d = ut.size(1);
  const scalar_t* u_ptr = ut.data_ptr<scalar_t>();
  const scalar_t* i_ptr = it.data_ptr<scalar_t>();
  const auto reg_scale = static_cast<scalar_t>(grad * reg / static_cast<double>(B));

  // d loss / d (s_pos - s_neg) of each triple.
  std::vector<scalar_t> w(B);
  for (int64_t b = 0; b < B; ++b) w[b] = static_cast<scalar_t>(-grad * sig[b] / B);

  if (grad_user) {
    const RowGroups g = group_by_row(ut.size(0), {users}, B);
    scatter_rows<scalar_t>(grad_user->data_ptr<scalar_t>(), u_ptr, ut.size(0), d, g, reg_scale,
                           [&](int64_t b, int64_t j, int64_t n, const Vec& acc) {
                             const Vec pq = load_n<Vec>(i_ptr + pos[b] * d + j, n) -
                                            load_n<Vec>(i_ptr + neg[b] * d + j, n);
                             return at::vec::fmadd(Vec(w[b]), pq, acc);
                           });
  }
  if (grad_item) {
    const RowGroups g = group_by_row(it.size(0), {pos, neg}, B);
    scatter_rows<scalar_t>(grad_item->data_ptr<scalar_t>(), i_ptr, it.size(0), d, g, reg_scale,
                           [&](int64_t e, int64_t j, int64_t n, const Vec& acc) {
                             const int64_t b = e < B ? e : e - B;
                             const scalar_t coef = e < B ? w[b] : -w[b];
                             const Vec uv = load_n<Vec>(u_ptr + users[b] * d + j, n);
                             return at::vec::fmadd(Vec(coef), uv, acc);
                           });
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> bpr_loss_cpu(const at::Tensor& user_table,
                                                const at::Tensor& item_table,
                                                const at::Tensor& users_in,
                                                const at::Tensor& pos_in, const at::Tensor& neg_in,
                                                double reg) {
  const at::Tensor users = users_in.contiguous(), pos = pos_in.contiguous();
  const at::Tensor neg = neg_in.contiguous();
  check_range(users, "users", "user_table", user_table.size(0));
  check_range(pos, "pos", "item_table", item_table.size(0));
  check_range(neg, "neg", "item_table", item_table.size(0));

  const int64_t B = users.size(0);
  const at::Tensor ut = user_table.contiguous(), it = item_table.contiguous();
  at::Tensor sig = at::empty({B}, ut.options());
  double total = 0.0;
  if (B > 0) {
    AT_DISPATCH_FLOATING_TYPES(ut.scalar_type(), "bpr_loss_cpu", [&] {
      total = forward_kernel<scalar_t>(ut, it, users.data_ptr<int64_t>(), pos.data_ptr<int64_t>(),
                                       neg.data_ptr<int64_t>(), B, reg, sig.data_ptr<scalar_t>());
    });
  }
  if (!std::isfinite(total)) bpr_diagnose_nonfinite(ut, it, users, pos, neg);
  const double loss = B > 0 ? total / static_cast<double>(B) : 0.0;
  return {at::scalar_tensor(loss, ut.options()), sig};
}

std::tuple<at::Tensor, at::Tensor> bpr_loss_backward_cpu(
    const at::Tensor& grad, const at::Tensor& sig_in, const at::Tensor& user_table,
    const at::Tensor& item_table, const at::Tensor& users_in, const at::Tensor& pos_in,
    const at::Tensor& neg_in, double reg, std::array<bool, 2> output_mask) {
  const at::Tensor users = users_in.contiguous(), pos = pos_in.contiguous();
  const at::Tensor neg = neg_in.contiguous();
  const at::Tensor ut = user_table.contiguous(), it = item_table.contiguous();
  const at::Tensor sig = sig_in.to(ut.scalar_type()).contiguous();
  const int64_t B = users.size(0);
  check_range(users, "users", "user_table", ut.size(0));
  check_range(pos, "pos", "item_table", it.size(0));
  check_range(neg, "neg", "item_table", it.size(0));

  at::Tensor grad_user = at::empty({output_mask[0] ? ut.size(0) : 0, ut.size(1)}, ut.options());
  at::Tensor grad_item = at::empty({output_mask[1] ? it.size(0) : 0, it.size(1)}, it.options());
  if (B == 0) {
    grad_user.zero_();
    grad_item.zero_();
  } else {
    const double g = grad.item<double>();
    AT_DISPATCH_FLOATING_TYPES(ut.scalar_type(), "bpr_loss_backward_cpu", [&] {
      backward_kernel<scalar_t>(g, sig.data_ptr<scalar_t>(), ut, it, users.data_ptr<int64_t>(),
                                pos.data_ptr<int64_t>(), neg.data_ptr<int64_t>(), B, reg,
                                output_mask[0] ? &grad_user : nullptr,
                                output_mask[1] ? &grad_item : nullptr);
    });
  }
  if (!output_mask[0]) grad_user = at::empty({0}, ut.options());
  if (!output_mask[1]) grad_item = at::empty({0}, it.options());
  return {grad_user, grad_item};
}

}  // namespace sgfd
