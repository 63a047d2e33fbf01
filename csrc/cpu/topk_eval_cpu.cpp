// CPU kernel of topk_eval. Scores are produced one cache-sized tile (a block of users x a tile
// of items) at a time and folded into a running top-K per user, so the users x items score
// matrix never exists; metrics are taken from the final top-K.
//
// Limitation: a score that overflows to -inf (finite embeddings of enormous magnitude) is
// treated like an excluded item, and a NaN score from inf - inf is never ranked.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <tuple>
#include <vector>

#include "topk_eval.h"

namespace sgfd_ext {
namespace {

// Users per block and items per tile: a tile holds at most kTileScores scores (1 MiB in float32)
// so it is still in L2 when scanned, and large user blocks amortise the packing of each item
// tile inside the GEMM. Blocks shrink when there are too few users to keep every thread busy.
constexpr int64_t kMinUserBlock = 16;
constexpr int64_t kMaxUserBlock = 512;
constexpr int64_t kTileScores = int64_t{1} << 18;
constexpr int64_t kBlocksPerThread = 8;
// Scores are tested against the admission threshold this many at a time (one vector compare).
constexpr int64_t kScanWidth = 16;

// Bit q is set when x[q] > thr, for the kScanWidth scores starting at x.
inline uint32_t above_mask(const float* x, float thr) {
#if defined(__AVX512F__)
  return _mm512_cmp_ps_mask(_mm512_loadu_ps(x), _mm512_set1_ps(thr), _CMP_GT_OQ);
#elif defined(__AVX__)
  const __m256 t = _mm256_set1_ps(thr);
  const auto lo =
      static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x), t, _CMP_GT_OQ)));
  const auto hi = static_cast<uint32_t>(
      _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + 8), t, _CMP_GT_OQ)));
  return lo | (hi << 8);
#else
  uint32_t m = 0;
  for (int64_t q = 0; q < kScanWidth; ++q) {
    m |= static_cast<uint32_t>(x[q] > thr) << q;
  }
  return m;
#endif
}

inline uint32_t above_mask(const double* x, double thr) {
#if defined(__AVX512F__)
  const __m512d t = _mm512_set1_pd(thr);
  const uint32_t lo = _mm512_cmp_pd_mask(_mm512_loadu_pd(x), t, _CMP_GT_OQ);
  const uint32_t hi = _mm512_cmp_pd_mask(_mm512_loadu_pd(x + 8), t, _CMP_GT_OQ);
  return lo | (hi << 8);
#else
  uint32_t m = 0;
  for (int64_t q = 0; q < kScanWidth; ++q) {
    m |= static_cast<uint32_t>(x[q] > thr) << q;
  }
  return m;
#endif
}

// The largest of the kScanWidth scores starting at x.
inline float chunk_max(const float* x) {
#if defined(__AVX512F__)
  return _mm512_reduce_max_ps(_mm512_loadu_ps(x));
#else
  return *std::max_element(x, x + kScanWidth);
#endif
}

inline double chunk_max(const double* x) { return *std::max_element(x, x + kScanWidth); }

template <typename scalar_t>
struct Ranked {
  scalar_t score;
  int64_t item;
};

// True when a ranks before b: a higher score, or an equal score and a lower item index.
template <typename scalar_t>
inline bool ranks_before(const Ranked<scalar_t>& a, const Ranked<scalar_t>& b) {
  return a.score > b.score || (a.score == b.score && a.item < b.item);
}

// The best K items seen so far for one user, kept as a heap whose root is the weakest entry.
// Items arrive in increasing index order, so a newcomer tied with the root ranks after it and
// only a strictly higher score gets in; excluded items carry -inf and never get in.
template <typename scalar_t>
class RunningTopK {
 public:
  RunningTopK(Ranked<scalar_t>* slots, int64_t k) : slots_(slots), k_(k) {}

  // Scores at or below this value cannot get in.
  scalar_t threshold() const {
    return size_ < k_ ? below_floor_ : std::max(below_floor_, slots_[0].score);
  }

  void push(scalar_t score, int64_t item) {
    const Ranked<scalar_t> entry{score, item};
    if (size_ < k_) {
      slots_[size_++] = entry;
      std::push_heap(slots_, slots_ + size_, ranks_before<scalar_t>);
      return;
    }
    // Replace the root and sift the newcomer down towards the leaves.
    int64_t hole = 0;
    for (int64_t child = 1; child < k_; child = 2 * hole + 1) {
      if (child + 1 < k_ && ranks_before(slots_[child], slots_[child + 1])) {
        ++child;
      }
      if (!ranks_before(entry, slots_[child])) {
        break;
      }
      slots_[hole] = slots_[child];
      hole = child;
    }
    slots_[hole] = entry;
  }

  // Folds one row of scores for items first_item, first_item + 1, ... into the top-K.
  void scan(const scalar_t* scores, int64_t n, int64_t first_item, std::vector<scalar_t>& scratch) {
    if (size_ < k_) {
      raise_floor(scores, n, scratch);
    }
    scalar_t thr = threshold();
    int64_t j = 0;
    for (; j + kScanWidth <= n; j += kScanWidth) {
      const uint32_t mask = above_mask(scores + j, thr);
      if (mask != 0) {
        thr = admit(scores + j, mask, first_item + j);
      }
    }
    for (; j < n; ++j) {
      if (scores[j] > thr) {
        push(scores[j], first_item + j);
        thr = threshold();
      }
    }
  }

  // Sorts the kept entries best first and returns how many there are.
  int64_t finish() {
    std::sort_heap(slots_, slots_ + size_, ranks_before<scalar_t>);
    return size_;
  }

 private:
  // While the top-K is still filling up, every item would get in. Instead, the K-th largest of
  // the row's chunk maxima is taken as a floor: K distinct items score at least that much, so
  // the final K-th best does too and anything below it can be skipped. Items equal to the floor
  // may still tie their way in, so only scores strictly below it are skipped.
  void raise_floor(const scalar_t* scores, int64_t n, std::vector<scalar_t>& maxima) {
    const int64_t n_chunks = n / kScanWidth;
    if (n_chunks < k_) {
      return;
    }
    maxima.resize(n_chunks);
    for (int64_t c = 0; c < n_chunks; ++c) {
      maxima[c] = chunk_max(scores + c * kScanWidth);
    }
    std::nth_element(maxima.begin(), maxima.begin() + (k_ - 1), maxima.end(),
                     std::greater<scalar_t>());
    const scalar_t floor = maxima[k_ - 1];
    if (floor > -std::numeric_limits<scalar_t>::infinity()) {
      const scalar_t below = std::nextafter(floor, -std::numeric_limits<scalar_t>::infinity());
      below_floor_ = std::max(below_floor_, below);
    }
  }

  // Offers the scores flagged in mask (bit q for scores[q]) and returns the new threshold. Kept
  // out of line so that the scan loop around it stays in registers.
  C10_NOINLINE scalar_t admit(const scalar_t* scores, uint32_t mask, int64_t first_item) {
    scalar_t thr = threshold();
    for (; mask != 0; mask &= mask - 1) {
      const int q = __builtin_ctz(mask);
      if (scores[q] > thr) {
        push(scores[q], first_item + q);
        thr = threshold();
      }
    }
    return thr;
  }

  Ranked<scalar_t>* slots_;
  int64_t k_;
  int64_t size_ = 0;
  scalar_t below_floor_ = -std::numeric_limits<scalar_t>::infinity();
};

struct Csr {
  const int64_t* indptr;
  const int64_t* indices;
};

// Writes the five metrics of one user at every K from its ranked list and sorted target set.
void user_metrics(const int64_t* top, int64_t max_k, const std::vector<int64_t>& targets,
                  c10::IntArrayRef ks, const std::vector<double>& idcg, float* out,
                  std::vector<double>& dcg_at, std::vector<int64_t>& hits_at) {
  if (targets.empty()) {
    std::fill(out, out + ks.size() * kNumMetrics, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  double dcg = 0.0;
  int64_t hits = 0;
  for (int64_t p = 0; p < max_k; ++p) {
    if (top[p] >= 0 && std::binary_search(targets.begin(), targets.end(), top[p])) {
      dcg += 1.0 / std::log2(static_cast<double>(p + 2));
      ++hits;
    }
    dcg_at[p] = dcg;
    hits_at[p] = hits;
  }

  const auto n_targets = static_cast<int64_t>(targets.size());
  for (size_t i = 0; i < ks.size(); ++i) {
    const int64_t k = ks[i];
    const int64_t h = hits_at[k - 1];
    const double g = dcg_at[k - 1];
    float* m = out + i * kNumMetrics;
    m[kRecall] = static_cast<float>(static_cast<double>(h) / n_targets);
    m[kNdcg] = static_cast<float>(g / idcg[std::min(n_targets, k)]);
    m[kPrecision] = static_cast<float>(static_cast<double>(h) / k);
    m[kHit] = h > 0 ? 1.0f : 0.0f;
    m[kNdcgHitnorm] = h > 0 ? static_cast<float>(g / idcg[h]) : 0.0f;
  }
}

// How the users x items product is cut: users per block and items per tile.
struct Tiling {
  int64_t user_block;
  int64_t item_tile;
  int64_t n_blocks;
};

Tiling choose_tiling(int64_t n_users, int64_t n_items, int64_t n_threads) {
  const int64_t target_blocks = kBlocksPerThread * n_threads;
  const int64_t per_block = (n_users + target_blocks - 1) / target_blocks;
  const int64_t user_block = std::clamp(per_block, kMinUserBlock, kMaxUserBlock);
  const int64_t item_tile = std::min(n_items, std::max(kScanWidth, kTileScores / user_block));
  return {user_block, item_tile, (n_users + user_block - 1) / user_block};
}

// Ranks every item for one block of users and writes their top items and metrics.
template <typename scalar_t>
class BlockRanker {
 public:
  BlockRanker(const at::Tensor& user, const at::Tensor& item, Csr exclude, Csr target,
              c10::IntArrayRef ks, int64_t max_k, const Tiling& tiling)
      : user_(user),
        item_(item),
        exclude_(exclude),
        target_(target),
        ks_(ks),
        max_k_(max_k),
        tiling_(tiling),
        idcg_(ideal_dcg_table(max_k)),
        tile_(at::empty({tiling.user_block * tiling.item_tile}, user.options())),
        slots_(tiling.user_block * max_k),
        dcg_at_(max_k),
        hits_at_(max_k) {}

  void run(int64_t block, int64_t* top_items, float* metrics) {
    const int64_t u0 = block * tiling_.user_block;
    const int64_t nu = std::min(tiling_.user_block, user_.size(0) - u0);
    const int64_t n_items = item_.size(0);
    const at::Tensor users = user_.narrow(0, u0, nu);
    best_.clear();
    for (int64_t r = 0; r < nu; ++r) {
      best_.emplace_back(slots_.data() + r * max_k_, max_k_);
    }

    for (int64_t i0 = 0; i0 < n_items; i0 += tiling_.item_tile) {
      const int64_t ni = std::min(tiling_.item_tile, n_items - i0);
      at::Tensor scores = tile_.narrow(0, 0, nu * ni).view({nu, ni});
      at::mm_out(scores, users, item_.narrow(0, i0, ni).t());
      scalar_t* s = scores.data_ptr<scalar_t>();
      for (int64_t r = 0; r < nu; ++r) {
        scalar_t* row = s + r * ni;
        mask_excluded(row, u0 + r, i0, ni);
        best_[r].scan(row, ni, i0, maxima_);
      }
    }

    for (int64_t r = 0; r < nu; ++r) {
      const int64_t u = u0 + r;
      int64_t* top = top_items + u * max_k_;
      const int64_t kept = best_[r].finish();
      for (int64_t p = 0; p < max_k_; ++p) {
        top[p] = p < kept ? slots_[r * max_k_ + p].item : -1;
      }
      targets_.assign(target_.indices + target_.indptr[u], target_.indices + target_.indptr[u + 1]);
      std::sort(targets_.begin(), targets_.end());
      targets_.erase(std::unique(targets_.begin(), targets_.end()), targets_.end());
      user_metrics(top, max_k_, targets_, ks_, idcg_, metrics + u * ks_.size() * kNumMetrics,
                   dcg_at_, hits_at_);
    }
  }

 private:
  // Sets the scores of the user's excluded items in this tile to -inf.
  void mask_excluded(scalar_t* row, int64_t u, int64_t i0, int64_t ni) const {
    for (int64_t e = exclude_.indptr[u]; e < exclude_.indptr[u + 1]; ++e) {
      const int64_t j = exclude_.indices[e] - i0;
      if (j >= 0 && j < ni) {
        row[j] = -std::numeric_limits<scalar_t>::infinity();
      }
    }
  }

  const at::Tensor& user_;
  const at::Tensor& item_;
  Csr exclude_;
  Csr target_;
  c10::IntArrayRef ks_;
  int64_t max_k_;
  Tiling tiling_;
  std::vector<double> idcg_;
  at::Tensor tile_;
  std::vector<Ranked<scalar_t>> slots_;
  std::vector<RunningTopK<scalar_t>> best_;
  std::vector<int64_t> targets_;
  std::vector<scalar_t> maxima_;
  std::vector<double> dcg_at_;
  std::vector<int64_t> hits_at_;
};

// Threads take user blocks from a shared counter, so a thread slowed down by other work on a
// shared machine does not hold the others back at the end.
template <typename scalar_t>
void topk_eval_blocks(const at::Tensor& user, const at::Tensor& item, Csr exclude, Csr target,
                      c10::IntArrayRef ks, int64_t max_k, int64_t* top_items, float* metrics) {
  const int64_t n_threads = at::get_num_threads();
  const Tiling tiling = choose_tiling(user.size(0), item.size(0), n_threads);
  std::atomic<int64_t> next_block{0};
  at::parallel_for(0, std::min(n_threads, tiling.n_blocks), 1, [&](int64_t, int64_t) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    BlockRanker<scalar_t> ranker(user, item, exclude, target, ks, max_k, tiling);
    for (int64_t block = next_block++; block < tiling.n_blocks; block = next_block++) {
      ranker.run(block, top_items, metrics);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> topk_eval_cpu(
    const at::Tensor& user_emb, const at::Tensor& item_emb, const at::Tensor& exclude_indptr,
    const at::Tensor& exclude_indices, const at::Tensor& target_indptr,
    const at::Tensor& target_indices, c10::IntArrayRef ks) {
  const int64_t max_k = check_topk_eval_inputs(user_emb, item_emb, exclude_indptr, exclude_indices,
                                               target_indptr, target_indices, ks);
  const at::Tensor user = user_emb.contiguous();
  const at::Tensor item = item_emb.contiguous();
  const at::Tensor ex_ptr = exclude_indptr.contiguous();
  const at::Tensor ex_idx = exclude_indices.contiguous();
  const at::Tensor t_ptr = target_indptr.contiguous();
  const at::Tensor t_idx = target_indices.contiguous();

  const int64_t n_users = user.size(0);
  at::Tensor top_items = at::empty({n_users, max_k}, user.options().dtype(at::kLong));
  at::Tensor metrics = at::empty({n_users, static_cast<int64_t>(ks.size()), kNumMetrics},
                                 user.options().dtype(at::kFloat));
  if (n_users == 0) {
    return {top_items, metrics};
  }

  const Csr exclude{ex_ptr.data_ptr<int64_t>(), ex_idx.data_ptr<int64_t>()};
  const Csr target{t_ptr.data_ptr<int64_t>(), t_idx.data_ptr<int64_t>()};
  AT_DISPATCH_FLOATING_TYPES(user.scalar_type(), "topk_eval_cpu", [&] {
    topk_eval_blocks<scalar_t>(user, item, exclude, target, ks, max_k,
                               top_items.data_ptr<int64_t>(), metrics.data_ptr<float>());
  });
  return {top_items, metrics};
}

}  // namespace
}  // namespace sgfd_ext

TORCH_LIBRARY_IMPL(sgfd_ext, CPU, m) { m.impl("topk_eval", &sgfd_ext::topk_eval_cpu); }
