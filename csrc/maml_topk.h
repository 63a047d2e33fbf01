// Top-K items under MAML's attentive distance: declarations shared by the schema file and the
// CPU/CUDA kernels.
//
// For user u and item i, with per-user and per-item parts of the first attention layer
// (user_hidden[u], item_hidden[i]) and the second layer (w2, b2):
//   h = tanh(user_hidden[u] + item_hidden[i])
//   w = d * softmax(w2 h + b2)
//   score(u, i) = -sum_k w_k (user_emb[u, k] - item_emb[i, k])^2
// Items are ranked by score, ties to the lower item index, excluded items never ranked.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace sgfd_ext {

// Validates every argument of maml_topk (shapes, dtypes, devices, CSR structure, finite
// inputs, k >= 1).
void check_maml_topk_inputs(const at::Tensor& user_hidden, const at::Tensor& user_emb,
                            const at::Tensor& item_hidden, const at::Tensor& item_emb,
                            const at::Tensor& w2, const at::Tensor& b2,
                            const at::Tensor& exclude_indptr, const at::Tensor& exclude_indices,
                            int64_t k);

}  // namespace sgfd_ext
