// Learning-rate schedule: linear warmup to the peak, then cosine decay to a floor.
#pragma once

#include <cstdint>

namespace siesta::train {

struct LrSchedule {
  double peak_lr = 1e-3;
  double min_lr = 0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;    // 0: constant peak_lr after warmup
  int64_t start_step = 0;     // optimizer step at which this schedule begins (a later stage)

  // lr of optimizer step `step` (0-based: the first update uses lr_at(0)). Warmup ramps
  // peak * (step + 1) / warmup_steps; afterwards cosine from peak to min_lr over the
  // remaining total_steps - warmup_steps; beyond total_steps it stays at min_lr.
  double lr_at(int64_t step) const;
  // Throws TrainError naming the field when the schedule is not well formed.
  void validate() const;
};

}  // namespace siesta::train
