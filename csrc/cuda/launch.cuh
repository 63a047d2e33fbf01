// What every kernel launch of the extension needs: the current stream, the launch check, a warp
// reduction and a grid size for row-per-warp kernels.
#pragma once

#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#if __has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
#include <c10/cuda/CUDAStream.h>
#define SGFD_HAVE_TORCH_CUDA 1
#endif

namespace sgfd {

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarp;
constexpr int64_t kMaxBlocks = 4096;

inline cudaStream_t current_stream() {
#ifdef SGFD_HAVE_TORCH_CUDA
  return c10::cuda::getCurrentCUDAStream().stream();
#else
  // A PyTorch without CUDA: the kernels are only compiled (SGFD_EXT_CUDA=compile-only), never run.
  return nullptr;
#endif
}

inline void check_launch() {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, "CUDA kernel launch failed: ", cudaGetErrorString(err));
}

// Blocks for a grid-stride loop that gives one warp to each of `rows` rows.
inline int64_t blocks_for_rows(int64_t rows) {
  return std::max<int64_t>(
      1, std::min<int64_t>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock, kMaxBlocks));
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

}  // namespace sgfd
