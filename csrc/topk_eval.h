// Full-ranking top-K evaluation: declarations shared by the schema file and the CPU/CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace sgfd_ext {

// Metrics per user and K, in this order along the last output dimension.
enum TopkMetric : int64_t { kRecall = 0, kNdcg, kPrecision, kHit, kNdcgHitnorm, kNumMetrics };

// Validates every argument of topk_eval (shapes, dtypes, devices, CSR structure, finite
// embeddings, 1 <= K <= number of items) and returns the largest K.
int64_t check_topk_eval_inputs(const at::Tensor& user_emb, const at::Tensor& item_emb,
                               const at::Tensor& exclude_indptr, const at::Tensor& exclude_indices,
                               const at::Tensor& target_indptr, const at::Tensor& target_indices,
                               c10::IntArrayRef ks);

// Ideal DCG of n hits at the top, for n = 0..max_k.
inline std::vector<double> ideal_dcg_table(int64_t max_k) {
  std::vector<double> table(max_k + 1, 0.0);
  for (int64_t n = 1; n <= max_k; ++n) {
    table[n] = table[n - 1] + 1.0 / std::log2(static_cast<double>(n + 1));
  }
  return table;
}

}  // namespace sgfd_ext
