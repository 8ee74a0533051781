// kd::Rng: a small, fast, fully specified random generator (xoshiro256** seeded by splitmix64).
// Its streams are identical on every platform and standard library, which makes the loader's
// shuffles and per-sample augmentations reproducible across machines and worker counts.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace kd {

class Rng {
 public:
  explicit Rng(uint64_t seed);
  // A seed derived from several values, e.g. Rng::Derive({run_seed, epoch, index}).
  static uint64_t Derive(std::initializer_list<uint64_t> values);

  uint64_t Next();
  // Uniform in [0, 1).
  double Uniform();
  double Uniform(double lo, double hi);
  // Uniform integer in [lo, hi] (inclusive).
  int64_t UniformInt(int64_t lo, int64_t hi);
  bool Bernoulli(double p);

 private:
  uint64_t s_[4];
};

}  // namespace kd
