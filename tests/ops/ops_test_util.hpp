// Helpers for the op tests: deterministic random data and finite-difference checks of a scalar
// loss L = <c, f(x)> against the gradient a backward op produced.
#pragma once

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "siesta/kernels/error.hpp"
#include "siesta/kernels/ops.hpp"

namespace siesta::kernels::test {

inline std::vector<float> random_vec(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

inline double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

// Central difference of loss() along dir at x (x is restored afterwards).
inline double directional_fd(std::vector<float>& x, const std::vector<float>& dir, float eps,
                             const std::function<double()>& loss) {
  std::vector<float> x0 = x;
  for (size_t i = 0; i < x.size(); ++i) x[i] = x0[i] + eps * dir[i];
  double lp = loss();
  for (size_t i = 0; i < x.size(); ++i) x[i] = x0[i] - eps * dir[i];
  double lm = loss();
  x = x0;
  return (lp - lm) / (2.0 * eps);
}

}  // namespace siesta::kernels::test
