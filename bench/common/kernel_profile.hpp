// Per-kernel GPU times from CUPTI's activity records, for benchmarks on a machine without
// Nsight Systems (the GPU machine has no nsys): which kernels a decode step runs, how long each
// takes on the device, and how much of the step the GPU spends with no kernel running.
// Recording adds host overhead to every launch, so a profiled run is not a timed run.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace siesta::bench {

struct KernelStat {
  std::string name;     // demangled, without namespaces and parameters: "gemv_kernel<1>"
  int64_t calls = 0;
  double total_us = 0;  // sum of the calls' device durations
  // What the calls add to the GPU's busy time: for each call, from the later of its start and
  // the previous kernel's end to its own end. With PDL a kernel starts early and waits, so its
  // duration overstates its cost; this is its cost on the step's critical path.
  double adds_us = 0;
};

struct KernelProfileReport {
  std::vector<KernelStat> kernels;  // by adds_us, largest first
  int64_t launches = 0;
  double span_us = 0;     // first kernel start to last kernel end
  double busy_us = 0;     // time with at least one kernel running
  double overlap_us = 0;  // sum of durations minus busy time (kernels running together, PDL)
  // A window of consecutive kernels from the middle of the run (start order), times in us from
  // the window's first start: where kernels overlap and where the GPU waits between them.
  struct Span {
    std::string name;
    double start_us, end_us;
  };
  std::vector<Span> window;
};

// Records every kernel the process runs between construction and stop(). Throws
// std::runtime_error naming the CUPTI call that failed, or saying the build has no CUPTI.
class KernelProfile {
 public:
  KernelProfile();
  ~KernelProfile();
  KernelProfile(const KernelProfile&) = delete;
  KernelProfile& operator=(const KernelProfile&) = delete;
  // window: how many consecutive kernels from the middle of the run to keep in the report.
  KernelProfileReport stop(int window = 0);

 private:
  bool running_ = false;
};

// Prints the report with per-step figures (divided by `steps`), the top `top` kernels, and the
// window of kernels if the report has one.
void print_kernel_profile(const KernelProfileReport& r, int64_t steps, int top, std::ostream& os);

}  // namespace siesta::bench
