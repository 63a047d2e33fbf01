// Building blocks of the CPU kernels: ATen's SIMD vectors for the instruction set the compiler
// targets (-march=native by default, so at::vec::Vectorized becomes AVX-512 or AVX2 code instead
// of scalar loops) and a reproducible split of rows over threads. Include before any ATen header.
#pragma once

#if !defined(CPU_CAPABILITY)
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__) && defined(__FMA__)
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#endif
#endif

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>

namespace sgfd {

// Rows per task below which a chunk is not worth a thread.
constexpr int64_t kRowsPerTask = 64;

// Splits [0, rows) into at most one contiguous chunk per thread, runs fn(chunk, begin, end) and
// returns the number of chunks. The split depends only on the row count and the thread count, so
// reductions over chunks are reproducible.
template <typename Fn>
int64_t for_each_chunk(int64_t rows, const Fn& fn) {
  const int64_t wanted = std::max<int64_t>(1, rows / kRowsPerTask);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), wanted));
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      fn(c, rows * c / chunks, rows * (c + 1) / chunks);
    }
  });
  return chunks;
}

// Loads n <= Vec::size() values (the rest are zero); a full vector takes the fast path.
template <typename Vec, typename T>
inline Vec load_n(const T* p, int64_t n) {
  return n == Vec::size() ? Vec::loadu(p) : Vec::loadu(p, n);
}

template <typename Vec, typename T>
inline void store_n(const Vec& v, T* p, int64_t n) {
  if (n == Vec::size()) {
    v.store(p);
  } else {
    v.store(p, static_cast<int>(n));
  }
}

template <typename T>
inline T lane_sum(const at::vec::Vectorized<T>& v) {
  return at::vec::vec_reduce_all<T>(
      [](const at::vec::Vectorized<T>& a, const at::vec::Vectorized<T>& b) { return a + b; }, v);
}

}  // namespace sgfd
