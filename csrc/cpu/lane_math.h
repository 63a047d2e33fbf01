// exp and tanh on fixed-width lane vectors (GCC/Clang vector extensions), so that kernels
// scoring many items side by side vectorise their transcendental functions too.
#pragma once

#include <cstdint>
#include <cstring>

namespace sgfd_ext {

constexpr int64_t kLanes = 16;

template <typename T>
struct LaneTraits;

template <>
struct LaneTraits<float> {
  typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
  typedef int32_t Bits __attribute__((vector_size(kLanes * sizeof(float))));
  static constexpr float kLow = -87.0f, kHigh = 88.0f;
  static constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.428606765330187e-06f;
  static constexpr int kTerms = 7, kMantissa = 23, kBias = 127;
};

template <>
struct LaneTraits<double> {
  typedef double Vec __attribute__((vector_size(kLanes * sizeof(double))));
  typedef int64_t Bits __attribute__((vector_size(kLanes * sizeof(double))));
  static constexpr double kLow = -708.0, kHigh = 709.0;
  static constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLn2Hi = 0.693147180369123816490, kLn2Lo = 1.90821492927058770002e-10;
  static constexpr int kTerms = 13, kMantissa = 52, kBias = 1023;
};

template <typename T>
using Lanes = typename LaneTraits<T>::Vec;

// e^x per lane: x = n ln2 + r with |r| <= ln2 / 2, a Taylor series for e^r, then times 2^n
// built in the exponent bits. Relative error about one unit in the last place.
template <typename T>
inline Lanes<T> exp_lanes(Lanes<T> x) {
  using L = LaneTraits<T>;
  x = x < L::kLow ? L::kLow : x;
  x = x > L::kHigh ? L::kHigh : x;
  const Lanes<T> n = (x * static_cast<T>(1.4426950408889634) + L::kRound) - L::kRound;
  const Lanes<T> r = (x - n * L::kLn2Hi) - n * L::kLn2Lo;
  Lanes<T> p = 1 + r * (T(1) / L::kTerms);
  for (int t = L::kTerms - 1; t >= 1; --t) {
    p = 1 + r * (T(1) / t) * p;
  }
  typename L::Bits bits = __builtin_convertvector(n, typename L::Bits);
  bits = (bits + L::kBias) << L::kMantissa;
  Lanes<T> scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// tanh per lane: (1 - e^-2|x|) / (1 + e^-2|x|) with the sign of x, and an odd Taylor series
// near zero, where that ratio would lose relative precision.
template <typename T>
inline Lanes<T> tanh_lanes(Lanes<T> x) {
  const Lanes<T> ax = x < 0 ? -x : x;
  const Lanes<T> e = exp_lanes<T>(-2 * ax);
  const Lanes<T> far = (1 - e) / (1 + e);
  const Lanes<T> x2 = x * x;
  const Lanes<T> near =
      x * (1 + x2 * (T(-1) / 3 + x2 * (T(2) / 15 + x2 * (T(-17) / 315 + x2 * (T(62) / 2835)))));
  return ax < T(0.0625) ? near : (x < 0 ? -far : far);
}

}  // namespace sgfd_ext
