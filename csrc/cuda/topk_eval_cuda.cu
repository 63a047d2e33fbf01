// CUDA kernel of topk_eval. Users are scored in chunks whose scores fill a bounded workspace
// (cuBLAS); excluded items are masked to -inf, each user's top-K is found exactly by a radix
// select over unique (score, item) keys and sorted in shared memory, and the metrics are taken
// on the device. Memory beyond the inputs is the workspace, a sorted copy of the targets and
// O(users x K).
//
// Limitation: float32 and float64 only; bfloat16 or half embeddings must be cast first.
// Limitation: the radix passes count into 256 shared-memory bins with atomics, which contend
// when most scores of a row share their leading bytes; the selection is not tuned beyond that.
// Limitation: as on CPU, a score that overflows to -inf counts as excluded and NaN is never
// ranked.
#include <ATen/Dispatch.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/diff.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/floor_divide.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isnan.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/unique_consecutive.h>
#include <ATen/ops/where.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "topk_eval.h"

namespace sgfd_ext {
namespace {

constexpr int kSelectThreads = 256;
constexpr int kMaskThreads = 128;
constexpr int kMetricThreads = 128;
// K up to this size is selected and sorted in shared memory; larger K sorts whole score rows.
constexpr int64_t kMaxSharedK = 2048;
// Scores held at once: 64 Mi entries (256 MiB in float32), whatever the number of users.
constexpr int64_t kWorkspaceScores = int64_t{1} << 26;

template <typename scalar_t>
struct ScoreBits;
template <>
struct ScoreBits<float> {
  using type = uint32_t;
};
template <>
struct ScoreBits<double> {
  using type = unsigned long long;
};

// An unsigned integer with the order of the score: a larger score maps to a larger integer,
// and -0 maps where +0 does (they tie, as in the CPU kernel).
__device__ __forceinline__ uint32_t order_bits(float x) {
  uint32_t u = __float_as_uint(x);
  u = u == 0x80000000u ? 0u : u;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ unsigned long long order_bits(double x) {
  auto u = static_cast<unsigned long long>(__double_as_longlong(x));
  u = u == (1ull << 63) ? 0ull : u;
  return (u >> 63) ? ~u : (u | (1ull << 63));
}

// A key is (order_bits(score), ~item): unique per item, larger for the better-ranked item.
// The radix select walks it one byte at a time, score bytes first, most significant first.
template <typename Bits>
struct KeyLayout {
  static constexpr int kScoreBytes = sizeof(Bits);
  static constexpr int kPasses = kScoreBytes + 4;

  __device__ static uint32_t digit(Bits bits, uint32_t rank, int pass) {
    if (pass < kScoreBytes) {
      return static_cast<uint32_t>(bits >> (8 * (kScoreBytes - 1 - pass))) & 0xFFu;
    }
    return (rank >> (8 * (3 - (pass - kScoreBytes)))) & 0xFFu;
  }

  // Masks selecting the bytes fixed before pass `pass`.
  __device__ static Bits score_mask(int pass) {
    if (pass <= 0) {
      return 0;
    }
    if (pass >= kScoreBytes) {
      return ~Bits{0};
    }
    return ~Bits{0} << (8 * (kScoreBytes - pass));
  }

  __device__ static uint32_t rank_mask(int pass) {
    const int fixed = pass - kScoreBytes;
    if (fixed <= 0) {
      return 0;
    }
    return fixed >= 4 ? 0xFFFFFFFFu : (0xFFFFFFFFu << (8 * (4 - fixed)));
  }

  __device__ static void set_digit(Bits& bits, uint32_t& rank, int pass, uint32_t d) {
    if (pass < kScoreBytes) {
      bits |= static_cast<Bits>(d) << (8 * (kScoreBytes - 1 - pass));
    } else {
      rank |= d << (8 * (3 - (pass - kScoreBytes)));
    }
  }
};

template <typename Bits>
__device__ __forceinline__ bool key_less(Bits a_bits, uint32_t a_rank, Bits b_bits,
                                         uint32_t b_rank) {
  return a_bits < b_bits || (a_bits == b_bits && a_rank < b_rank);
}

template <typename scalar_t>
__global__ void mask_excluded_kernel(scalar_t* __restrict__ scores, int64_t n_items,
                                     const int64_t* __restrict__ indptr,
                                     const int64_t* __restrict__ indices, int64_t first_user) {
  const int64_t row = blockIdx.x;
  const int64_t user = first_user + row;
  for (int64_t e = indptr[user] + threadIdx.x; e < indptr[user + 1]; e += blockDim.x) {
    scores[row * n_items + indices[e]] = -std::numeric_limits<scalar_t>::infinity();
  }
}

// One block per user row: writes the row's best min(max_k, candidates) items, best first,
// and -1 after them. Candidates are the items whose score is above -inf (not excluded).
template <typename scalar_t>
__global__ void select_topk_kernel(const scalar_t* __restrict__ scores, int64_t n_items,
                                   int64_t max_k, int64_t capacity,
                                   int64_t* __restrict__ top_items) {
  using Bits = typename ScoreBits<scalar_t>::type;
  using Layout = KeyLayout<Bits>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  Bits* sel_bits = reinterpret_cast<Bits*>(shared_bytes);
  uint32_t* sel_rank = reinterpret_cast<uint32_t*>(sel_bits + capacity);
  __shared__ int hist[256];
  __shared__ int count;
  __shared__ int remaining;
  __shared__ Bits prefix_bits;
  __shared__ uint32_t prefix_rank;

  const scalar_t minus_inf = -std::numeric_limits<scalar_t>::infinity();
  const scalar_t* row = scores + static_cast<int64_t>(blockIdx.x) * n_items;
  int64_t* top = top_items + static_cast<int64_t>(blockIdx.x) * max_k;
  const int tid = threadIdx.x;

  if (tid == 0) {
    count = 0;
    prefix_bits = 0;
    prefix_rank = 0;
  }
  __syncthreads();
  int local = 0;
  for (int64_t j = tid; j < n_items; j += blockDim.x) {
    local += row[j] > minus_inf ? 1 : 0;
  }
  atomicAdd(&count, local);
  __syncthreads();
  const int k = static_cast<int>(min(max_k, static_cast<int64_t>(count)));
  if (tid == 0) {
    remaining = k;
  }

  if (k > 0) {
    for (int pass = 0; pass < Layout::kPasses; ++pass) {
      for (int b = tid; b < 256; b += blockDim.x) {
        hist[b] = 0;
      }
      __syncthreads();
      const Bits want_bits = prefix_bits;
      const uint32_t want_rank = prefix_rank;
      const Bits bits_mask = Layout::score_mask(pass);
      const uint32_t rank_mask = Layout::rank_mask(pass);
      for (int64_t j = tid; j < n_items; j += blockDim.x) {
        const scalar_t x = row[j];
        if (!(x > minus_inf)) {
          continue;
        }
        const Bits bits = order_bits(x);
        const uint32_t rank = ~static_cast<uint32_t>(j);
        if ((bits & bits_mask) == want_bits && (rank & rank_mask) == want_rank) {
          atomicAdd(&hist[Layout::digit(bits, rank, pass)], 1);
        }
      }
      __syncthreads();
      if (tid == 0) {
        // The k-th largest key lies in the highest digit bucket where the count from the top
        // reaches the number of keys still to pass.
        int need = remaining;
        uint32_t d = 255;
        for (; d > 0; --d) {
          if (hist[d] >= need) {
            break;
          }
          need -= hist[d];
        }
        remaining = need;
        Layout::set_digit(prefix_bits, prefix_rank, pass, d);
      }
      __syncthreads();
    }

    // Every key at or above the k-th largest is selected: exactly k of them, keys being unique.
    const Bits kth_bits = prefix_bits;
    const uint32_t kth_rank = prefix_rank;
    if (tid == 0) {
      count = 0;
    }
    __syncthreads();
    for (int64_t j = tid; j < n_items; j += blockDim.x) {
      const scalar_t x = row[j];
      if (!(x > minus_inf)) {
        continue;
      }
      const Bits bits = order_bits(x);
      const uint32_t rank = ~static_cast<uint32_t>(j);
      if (!key_less(bits, rank, kth_bits, kth_rank)) {
        const int slot = atomicAdd(&count, 1);
        if (slot < k) {
          sel_bits[slot] = bits;
          sel_rank[slot] = rank;
        }
      }
    }
    int n_sort = 1;
    while (n_sort < k) {
      n_sort <<= 1;
    }
    for (int i = k + tid; i < n_sort; i += blockDim.x) {
      sel_bits[i] = 0;  // below every real key: real keys have order_bits > 0
      sel_rank[i] = 0;
    }
    __syncthreads();

    // Bitonic sort, descending.
    for (int size = 2; size <= n_sort; size <<= 1) {
      for (int stride = size >> 1; stride > 0; stride >>= 1) {
        for (int i = tid; i < n_sort; i += blockDim.x) {
          const int partner = i ^ stride;
          if (partner > i) {
            const bool descending = (i & size) == 0;
            const Bits a_bits = sel_bits[i];
            const uint32_t a_rank = sel_rank[i];
            const Bits b_bits = sel_bits[partner];
            const uint32_t b_rank = sel_rank[partner];
            const bool swap = descending ? key_less(a_bits, a_rank, b_bits, b_rank)
                                         : key_less(b_bits, b_rank, a_bits, a_rank);
            if (swap) {
              sel_bits[i] = b_bits;
              sel_rank[i] = b_rank;
              sel_bits[partner] = a_bits;
              sel_rank[partner] = a_rank;
            }
          }
        }
        __syncthreads();
      }
    }
    for (int p = tid; p < k; p += blockDim.x) {
      top[p] = static_cast<int64_t>(~sel_rank[p]);
    }
  }
  for (int64_t p = k + tid; p < max_k; p += blockDim.x) {
    top[p] = -1;
  }
}

__device__ bool contains_sorted(const int64_t* values, int64_t n, int64_t x) {
  int64_t lo = 0;
  int64_t hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (values[mid] < x) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < n && values[lo] == x;
}

__device__ double ideal_dcg(int64_t n) {
  double sum = 0.0;
  for (int64_t p = 0; p < n; ++p) {
    sum += 1.0 / log2(static_cast<double>(p + 2));
  }
  return sum;
}

// One thread per user; targets are sorted and unique within each row.
__global__ void metrics_kernel(const int64_t* __restrict__ top_items, int64_t n_users,
                               int64_t max_k, const int64_t* __restrict__ target_indptr,
                               const int64_t* __restrict__ target_indices,
                               const int64_t* __restrict__ ks, int64_t n_ks,
                               float* __restrict__ metrics) {
  const int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= n_users) {
    return;
  }
  const int64_t* top = top_items + u * max_k;
  const int64_t* targets = target_indices + target_indptr[u];
  const int64_t n_targets = target_indptr[u + 1] - target_indptr[u];
  float* out = metrics + u * n_ks * kNumMetrics;
  if (n_targets == 0) {
    for (int64_t i = 0; i < n_ks * kNumMetrics; ++i) {
      out[i] = nanf("");
    }
    return;
  }
  for (int64_t i = 0; i < n_ks; ++i) {
    const int64_t k = ks[i];
    int64_t hits = 0;
    double dcg = 0.0;
    for (int64_t p = 0; p < k; ++p) {
      if (top[p] >= 0 && contains_sorted(targets, n_targets, top[p])) {
        ++hits;
        dcg += 1.0 / log2(static_cast<double>(p + 2));
      }
    }
    float* m = out + i * kNumMetrics;
    m[kRecall] = static_cast<float>(static_cast<double>(hits) / n_targets);
    m[kNdcg] = static_cast<float>(dcg / ideal_dcg(min(n_targets, k)));
    m[kPrecision] = static_cast<float>(static_cast<double>(hits) / k);
    m[kHit] = hits > 0 ? 1.0f : 0.0f;
    m[kNdcgHitnorm] = hits > 0 ? static_cast<float>(dcg / ideal_dcg(hits)) : 0.0f;
  }
}

// The target rows sorted and without duplicates, as (indptr, indices).
std::tuple<at::Tensor, at::Tensor> sorted_unique_rows(const at::Tensor& indptr,
                                                      const at::Tensor& indices, int64_t n_rows,
                                                      int64_t n_cols) {
  if (indices.numel() == 0) {
    return {indptr, indices};
  }
  const at::Tensor rows = at::repeat_interleave(at::diff(indptr));
  const at::Tensor keys = std::get<0>(at::sort(rows * n_cols + indices));
  const at::Tensor unique = std::get<0>(at::unique_consecutive(keys));
  const at::Tensor unique_rows = at::floor_divide(unique, n_cols);
  const at::Tensor unique_cols = unique - unique_rows * n_cols;
  const at::Tensor unique_indptr =
      at::searchsorted(unique_rows, at::arange(n_rows + 1, indptr.options()));
  return {unique_indptr, unique_cols};
}

// Top-K for K beyond shared memory: a stable descending sort of whole rows keeps lower item
// indices first among equal scores (-0 is made +0 so that the two tie, NaN is made -inf).
void select_topk_by_sort(at::Tensor& scores, int64_t max_k, at::Tensor& top) {
  scores.masked_fill_(scores.eq(0), 0);
  scores.masked_fill_(scores.isnan(), -std::numeric_limits<double>::infinity());
  const at::Tensor order = std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/1,
                                                /*descending=*/true))
                               .narrow(1, 0, max_k);
  const at::Tensor n_candidates =
      scores.gt(-std::numeric_limits<double>::infinity()).sum(1, /*keepdim=*/true);
  const at::Tensor position = at::arange(max_k, top.options()).unsqueeze(0);
  top.copy_(at::where(position < n_candidates, order, at::full({}, -1, top.options())));
}

// Only device-generic PyTorch headers are used here, so that the file also compiles against a
// CPU build of PyTorch; the CUDA stream comes through the device-guard interface.
cudaStream_t current_stream(const c10::Device& device) {
  const c10::Stream stream = c10::impl::getDeviceGuardImpl(device.type())->getStream(device);
  return static_cast<cudaStream_t>(stream.native_handle());
}

void check_launch() {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, "topk_eval CUDA kernel launch failed: ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> topk_eval_cuda(
    const at::Tensor& user_emb, const at::Tensor& item_emb, const at::Tensor& exclude_indptr,
    const at::Tensor& exclude_indices, const at::Tensor& target_indptr,
    const at::Tensor& target_indices, c10::IntArrayRef ks) {
  const int64_t max_k = check_topk_eval_inputs(user_emb, item_emb, exclude_indptr, exclude_indices,
                                               target_indptr, target_indices, ks);
  TORCH_CHECK(item_emb.size(0) < (int64_t{1} << 31),
              "topk_eval on CUDA supports fewer than 2^31 items, got ", item_emb.size(0));
  const c10::DeviceGuard device_guard(user_emb.device());
  const at::Tensor user = user_emb.contiguous();
  const at::Tensor item = item_emb.contiguous();
  const at::Tensor ex_ptr = exclude_indptr.contiguous();
  const at::Tensor ex_idx = exclude_indices.contiguous();

  const int64_t n_users = user.size(0);
  const int64_t n_items = item.size(0);
  const auto n_ks = static_cast<int64_t>(ks.size());
  at::Tensor top_items = at::empty({n_users, max_k}, user.options().dtype(at::kLong));
  at::Tensor metrics = at::empty({n_users, n_ks, kNumMetrics}, user.options().dtype(at::kFloat));
  if (n_users == 0) {
    return {top_items, metrics};
  }

  const int64_t chunk = std::max<int64_t>(1, std::min(n_users, kWorkspaceScores / n_items));
  at::Tensor workspace = at::empty({chunk * n_items}, user.options());
  const cudaStream_t stream = current_stream(user.device());
  AT_DISPATCH_FLOATING_TYPES(user.scalar_type(), "topk_eval_cuda", [&] {
    using Bits = typename ScoreBits<scalar_t>::type;
    for (int64_t u0 = 0; u0 < n_users; u0 += chunk) {
      const int64_t rows = std::min(chunk, n_users - u0);
      at::Tensor scores = workspace.narrow(0, 0, rows * n_items).view({rows, n_items});
      at::mm_out(scores, user.narrow(0, u0, rows), item.t());
      mask_excluded_kernel<scalar_t><<<rows, kMaskThreads, 0, stream>>>(
          scores.data_ptr<scalar_t>(), n_items, ex_ptr.data_ptr<int64_t>(),
          ex_idx.data_ptr<int64_t>(), u0);
      check_launch();

      at::Tensor top = top_items.narrow(0, u0, rows);
      if (max_k <= kMaxSharedK) {
        int64_t capacity = 1;
        while (capacity < max_k) {
          capacity <<= 1;
        }
        const size_t shared = capacity * (sizeof(Bits) + sizeof(uint32_t));
        select_topk_kernel<scalar_t><<<rows, kSelectThreads, shared, stream>>>(
            scores.data_ptr<scalar_t>(), n_items, max_k, capacity, top.data_ptr<int64_t>());
        check_launch();
      } else {
        select_topk_by_sort(scores, max_k, top);
      }
    }
  });

  const auto [t_ptr, t_idx] =
      sorted_unique_rows(target_indptr.contiguous(), target_indices.contiguous(), n_users, n_items);
  const at::Tensor ks_device = at::tensor(ks, at::kLong).to(user.device());
  const auto blocks = static_cast<unsigned>((n_users + kMetricThreads - 1) / kMetricThreads);
  metrics_kernel<<<blocks, kMetricThreads, 0, stream>>>(
      top_items.data_ptr<int64_t>(), n_users, max_k, t_ptr.data_ptr<int64_t>(),
      t_idx.data_ptr<int64_t>(), ks_device.data_ptr<int64_t>(), n_ks, metrics.data_ptr<float>());
  check_launch();
  return {top_items, metrics};
}

}  // namespace
}  // namespace sgfd_ext

TORCH_LIBRARY_IMPL(sgfd_ext, CUDA, m) { m.impl("topk_eval", &sgfd_ext::topk_eval_cuda); }
