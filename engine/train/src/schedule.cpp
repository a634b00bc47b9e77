// Warmup + cosine learning-rate schedule.
#include "siesta/train/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "siesta/train/error.hpp"

namespace siesta::train {

double LrSchedule::lr_at(int64_t step) const {
  step -= start_step;
  if (step < 0) step = 0;
  if (step < warmup_steps) return peak_lr * double(step + 1) / double(warmup_steps);
  if (total_steps <= 0) return peak_lr;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress = std::min(1.0, double(step - warmup_steps) / double(decay_steps));
  return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
}

void LrSchedule::validate() const {
  if (!(peak_lr > 0) || !std::isfinite(peak_lr))
    throw TrainError("lr schedule: peak_lr must be a finite value > 0 (got " +
                     std::to_string(peak_lr) + ")");
  if (min_lr < 0 || min_lr > peak_lr)
    throw TrainError("lr schedule: min_lr must be in [0, peak_lr = " + std::to_string(peak_lr) +
                     "] (got " + std::to_string(min_lr) + ")");
  if (warmup_steps < 0 || total_steps < 0)
    throw TrainError("lr schedule: warmup_steps and total_steps must be >= 0");
  if (total_steps > 0 && warmup_steps > total_steps)
    throw TrainError("lr schedule: warmup_steps (" + std::to_string(warmup_steps) +
                     ") exceeds total_steps (" + std::to_string(total_steps) + ")");
}

}  // namespace siesta::train
