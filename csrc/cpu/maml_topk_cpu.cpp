// CPU kernel of maml_topk. Users are split into blocks across threads; each block walks the
// items tile by tile and scores kLanes items of one user at a time, one item per vector lane,
// then folds the scores into a running top-K per user. The users x items score matrix never
// exists.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "cpu/lane_math.h"
#include "maml_topk.h"

namespace sgfd_ext {
namespace {

constexpr int64_t kUserBlock = 16;   // users per parallel task
constexpr int64_t kTileGroups = 32;  // lane groups per item tile, reused across a user block

// Item parts packed per group of kLanes items, one lane per item: a vectors of hidden values,
// then d vectors of embedding values. Lanes past the last item hold zeros; their scores are
// computed and ignored.
template <typename T>
std::vector<Lanes<T>> pack_items(const T* hidden, const T* emb, int64_t n_items, int64_t a,
                                 int64_t d) {
  const int64_t groups = (n_items + kLanes - 1) / kLanes;
  std::vector<Lanes<T>> out(groups * (a + d), Lanes<T>{});
  for (int64_t i = 0; i < n_items; ++i) {
    Lanes<T>* group = out.data() + (i / kLanes) * (a + d);
    const int64_t lane = i % kLanes;
    for (int64_t j = 0; j < a; ++j) {
      group[j][lane] = hidden[i * a + j];
    }
    for (int64_t k = 0; k < d; ++k) {
      group[a + k][lane] = emb[i * d + k];
    }
  }
  return out;
}

// Scores of one user against one packed group of items; h and logits are scratch of a and d
// vectors. Every lane runs the same operations in the same order, so identical items get
// bit-identical scores wherever they sit.
template <typename T>
void score_lanes(const T* uh, const T* ue, const Lanes<T>* group, const T* w2, const T* b2,
                 int64_t a, int64_t d, Lanes<T>* h, Lanes<T>* logits, T* out) {
  const Lanes<T>* ih = group;
  const Lanes<T>* ie = group + a;
  for (int64_t j = 0; j < a; ++j) {
    h[j] = tanh_lanes<T>(uh[j] + ih[j]);
  }

  // Second attention layer, four output rows at a time (independent accumulators).
  int64_t k = 0;
  for (; k + 4 <= d; k += 4) {
    const T* w = w2 + k * a;
    Lanes<T> c0 = b2[k] + Lanes<T>{}, c1 = b2[k + 1] + Lanes<T>{};
    Lanes<T> c2 = b2[k + 2] + Lanes<T>{}, c3 = b2[k + 3] + Lanes<T>{};
    for (int64_t j = 0; j < a; ++j) {
      c0 += w[j] * h[j];
      c1 += w[a + j] * h[j];
      c2 += w[2 * a + j] * h[j];
      c3 += w[3 * a + j] * h[j];
    }
    logits[k] = c0;
    logits[k + 1] = c1;
    logits[k + 2] = c2;
    logits[k + 3] = c3;
  }
  for (; k < d; ++k) {
    Lanes<T> c = b2[k] + Lanes<T>{};
    for (int64_t j = 0; j < a; ++j) {
      c += w2[k * a + j] * h[j];
    }
    logits[k] = c;
  }

  // Softmax over the d logits weights the squared differences; the weights sum to d.
  Lanes<T> peak = logits[0];
  for (k = 1; k < d; ++k) {
    peak = logits[k] > peak ? logits[k] : peak;
  }
  Lanes<T> total = {}, weighted = {};
  for (k = 0; k < d; ++k) {
    const Lanes<T> e = exp_lanes<T>(logits[k] - peak);
    const Lanes<T> diff = ue[k] - ie[k];
    total += e;
    weighted += e * diff * diff;
  }
  const Lanes<T> score = -static_cast<T>(d) * weighted / total;
  for (int64_t l = 0; l < kLanes; ++l) {
    out[l] = score[l];
  }
}

// Inserts (s, item) into a list sorted by descending score. Items arrive in increasing index
// order, so an equal score goes after the ones already there and the lower index wins ties.
template <typename T>
inline void offer(T* score, int64_t* item, int64_t k, int64_t& count, T s, int64_t i) {
  if (count == k && !(s > score[k - 1])) {
    return;
  }
  int64_t q = std::min(count, k - 1);
  while (q > 0 && score[q - 1] < s) {
    score[q] = score[q - 1];
    item[q] = item[q - 1];
    --q;
  }
  score[q] = s;
  item[q] = i;
  count = std::min(count + 1, k);
}

template <typename T>
void maml_topk_kernel(const at::Tensor& user_hidden, const at::Tensor& user_emb,
                      const at::Tensor& item_hidden, const at::Tensor& item_emb,
                      const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& indptr,
                      const at::Tensor& indices, int64_t k, at::Tensor& top_items,
                      at::Tensor& top_scores) {
  const int64_t n_users = user_emb.size(0), d = user_emb.size(1);
  const int64_t n_items = item_emb.size(0), a = w2.size(1);
  const int64_t groups = (n_items + kLanes - 1) / kLanes;
  const std::vector<Lanes<T>> packed =
      pack_items(item_hidden.data_ptr<T>(), item_emb.data_ptr<T>(), n_items, a, d);

  const T* uh = user_hidden.data_ptr<T>();
  const T* ue = user_emb.data_ptr<T>();
  const T* w2p = w2.data_ptr<T>();
  const T* b2p = b2.data_ptr<T>();
  const int64_t* ptr = indptr.data_ptr<int64_t>();
  const int64_t* idx = indices.data_ptr<int64_t>();
  T* out_score = top_scores.data_ptr<T>();
  int64_t* out_item = top_items.data_ptr<int64_t>();

  const int64_t n_blocks = (n_users + kUserBlock - 1) / kUserBlock;
  at::parallel_for(0, n_blocks, 1, [&](int64_t first, int64_t last) {
    std::vector<Lanes<T>> h(a), logits(d);
    T scores[kLanes];
    std::vector<std::vector<int64_t>> excluded(kUserBlock);
    std::vector<size_t> cursor(kUserBlock);
    std::vector<int64_t> count(kUserBlock);

    for (int64_t block = first; block < last; ++block) {
      const int64_t u0 = block * kUserBlock;
      const int64_t u1 = std::min(n_users, u0 + kUserBlock);
      for (int64_t u = u0; u < u1; ++u) {
        auto& ex = excluded[u - u0];
        ex.assign(idx + ptr[u], idx + ptr[u + 1]);
        std::sort(ex.begin(), ex.end());
        cursor[u - u0] = 0;
        count[u - u0] = 0;
      }

      for (int64_t g0 = 0; g0 < groups; g0 += kTileGroups) {
        const int64_t g1 = std::min(groups, g0 + kTileGroups);
        for (int64_t u = u0; u < u1; ++u) {
          const auto& ex = excluded[u - u0];
          size_t& c = cursor[u - u0];
          for (int64_t g = g0; g < g1; ++g) {
            score_lanes(uh + u * a, ue + u * d, packed.data() + g * (a + d), w2p, b2p, a, d,
                        h.data(), logits.data(), scores);
            const int64_t lanes = std::min(kLanes, n_items - g * kLanes);
            for (int64_t l = 0; l < lanes; ++l) {
              const int64_t item = g * kLanes + l;
              while (c < ex.size() && ex[c] < item) {
                ++c;
              }
              if (c < ex.size() && ex[c] == item) {
                continue;
              }
              offer(out_score + u * k, out_item + u * k, k, count[u - u0], scores[l], item);
            }
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> maml_topk_cpu(
    const at::Tensor& user_hidden, const at::Tensor& user_emb, const at::Tensor& item_hidden,
    const at::Tensor& item_emb, const at::Tensor& w2, const at::Tensor& b2,
    const at::Tensor& exclude_indptr, const at::Tensor& exclude_indices, int64_t k) {
  check_maml_topk_inputs(user_hidden, user_emb, item_hidden, item_emb, w2, b2, exclude_indptr,
                         exclude_indices, k);
  const auto uh = user_hidden.contiguous(), ue = user_emb.contiguous();
  const auto ih = item_hidden.contiguous(), ie = item_emb.contiguous();
  const auto w = w2.contiguous(), b = b2.contiguous();
  const auto ptr = exclude_indptr.contiguous(), idx = exclude_indices.contiguous();

  const int64_t n_users = user_emb.size(0);
  auto top_items = at::full({n_users, k}, -1, user_emb.options().dtype(at::kLong));
  auto top_scores =
      at::full({n_users, k}, -std::numeric_limits<double>::infinity(), user_emb.options());
  if (n_users == 0 || item_emb.size(0) == 0) {
    return {top_items, top_scores};
  }
  AT_DISPATCH_FLOATING_TYPES(user_emb.scalar_type(), "maml_topk_cpu", [&] {
    maml_topk_kernel<scalar_t>(uh, ue, ih, ie, w, b, ptr, idx, k, top_items, top_scores);
  });
  return {top_items, top_scores};
}

}  // namespace
}  // namespace sgfd_ext

TORCH_LIBRARY_IMPL(sgfd_ext, CPU, m) { m.impl("maml_topk", &sgfd_ext::maml_topk_cpu); }
