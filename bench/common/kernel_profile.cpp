#include "kernel_profile.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <mutex>
#include <ostream>
#include <stdexcept>

#ifdef SIESTA_WITH_CUPTI
#include <cupti.h>
#endif

namespace siesta::bench {

#ifdef SIESTA_WITH_CUPTI
namespace {

struct Record {
  std::string mangled;          // demangled once per distinct name, in stop()
  uint64_t start = 0, end = 0;  // ns
};

std::mutex g_mutex;
std::vector<Record> g_records;

// "siesta::kernels::cuda::(anonymous namespace)::gemv_kernel<1>(GemvPolicy<1>, ...)" ->
// "gemv_kernel<1>": parameters dropped, then the qualifiers outside template brackets.
std::string short_name(const char* mangled) {
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string s = status == 0 && d ? d : mangled;
  std::free(d);
  int depth = 0;
  size_t cut = s.size(), last_scope = std::string::npos;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') ++depth;
    else if (s[i] == '>') --depth;
    else if (s[i] == '(' && depth == 0 && s.compare(i, 21, "(anonymous namespace)") != 0) {
      cut = i;
      break;
    } else if (s[i] == ':' && depth == 0 && i + 1 < s.size() && s[i + 1] == ':') {
      last_scope = i + 2;
    }
  }
  s = s.substr(0, cut);
  if (last_scope != std::string::npos && last_scope < s.size()) s = s.substr(last_scope);
  return s;
}

void check(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return;
  const char* msg = nullptr;
  cuptiGetResultString(r, &msg);
  throw std::runtime_error(std::string("kernel profile: ") + what + " failed: " +
                           (msg ? msg : "unknown CUPTI error"));
}

constexpr size_t kBufferBytes = size_t(8) << 20;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* rec = nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && rec->kind != CUPTI_ACTIVITY_KIND_KERNEL)
      continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
    g_records.push_back({k->name, k->start, k->end});
  }
  std::free(buffer);
}

}  // namespace

KernelProfile::KernelProfile() {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_records.clear();
  }
  check(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed),
        "cuptiActivityRegisterCallbacks");
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "cuptiActivityEnable");
  running_ = true;
}

KernelProfile::~KernelProfile() {
  if (running_) {  // destructor: stop quietly
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  }
}

KernelProfileReport KernelProfile::stop(int window) {
  check(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");
  check(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "cuptiActivityDisable");
  running_ = false;
  std::vector<Record> recs;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    recs.swap(g_records);
  }
  KernelProfileReport r;
  r.launches = int64_t(recs.size());
  if (recs.empty()) return r;
  std::sort(recs.begin(), recs.end(),
            [](const Record& a, const Record& b) { return a.start < b.start; });
  std::map<std::string, std::string> short_of;  // mangled -> short
  std::map<std::string, KernelStat> by_name;
  double sum_us = 0;
  uint64_t busy_end = recs[0].start, busy_ns = 0, last_end = 0;
  for (const Record& x : recs) {
    const double us = double(x.end - x.start) / 1e3;
    auto sn = short_of.try_emplace(x.mangled);
    if (sn.second) sn.first->second = short_name(x.mangled.c_str());
    auto& st = by_name[sn.first->second];
    st.name = sn.first->second;
    ++st.calls;
    st.total_us += us;
    sum_us += us;
    // Union of [start, end) intervals, walking in start order.
    if (x.start >= busy_end) busy_ns += x.end - x.start;
    else if (x.end > busy_end) busy_ns += x.end - busy_end;
    busy_end = std::max(busy_end, x.end);
    last_end = std::max(last_end, x.end);
  }
  // By end time: each call adds what runs past the end before it (see KernelStat::adds_us).
  std::vector<const Record*> by_end;
  for (const Record& x : recs) by_end.push_back(&x);
  std::sort(by_end.begin(), by_end.end(),
            [](const Record* a, const Record* b) { return a->end < b->end; });
  uint64_t prev_end = 0;
  for (const Record* x : by_end) {
    const uint64_t from = std::max(prev_end, x->start);
    by_name[short_of[x->mangled]].adds_us += double(x->end - std::min(from, x->end)) / 1e3;
    prev_end = std::max(prev_end, x->end);
  }
  const size_t w0 = recs.size() / 2, w1 = std::min(recs.size(), w0 + size_t(std::max(0, window)));
  for (size_t i = w0; i < w1; ++i)
    r.window.push_back({short_of[recs[i].mangled], double(recs[i].start - recs[w0].start) / 1e3,
                        double(recs[i].end - recs[w0].start) / 1e3});
  r.span_us = double(last_end - recs[0].start) / 1e3;
  r.busy_us = double(busy_ns) / 1e3;
  r.overlap_us = sum_us - r.busy_us;
  for (auto& [name, st] : by_name) r.kernels.push_back(st);
  std::sort(r.kernels.begin(), r.kernels.end(),
            [](const KernelStat& a, const KernelStat& b) { return a.adds_us > b.adds_us; });
  return r;
}

#else  // no CUPTI in this build: nothing can record kernels

KernelProfile::KernelProfile() {
  throw std::runtime_error("kernel profile: this build has no CUPTI (it needs SIESTA_CUDA=ON or "
                           "AUTO and the CUDA toolkit's CUPTI library, which CMake's "
                           "CUDA::cupti target finds)");
}
KernelProfile::~KernelProfile() = default;
KernelProfileReport KernelProfile::stop(int) { return {}; }

#endif

void print_kernel_profile(const KernelProfileReport& r, int64_t steps, int top, std::ostream& os) {
  const double n = double(std::max<int64_t>(1, steps));
  os << "kernel profile (CUPTI device times, per step over " << steps << " steps): "
     << std::fixed << std::setprecision(1) << double(r.launches) / n << " kernels, span "
     << r.span_us / n << " us, GPU busy " << r.busy_us / n << " us, idle "
     << (r.span_us - r.busy_us) / n << " us, overlapping " << r.overlap_us / n << " us\n";
  os << "  " << std::setw(44) << std::left << "kernel" << std::right << std::setw(12)
     << "calls/step" << std::setw(12) << "us/step" << std::setw(10) << "us/call" << std::setw(14)
     << "adds us/step" << "\n";
  int shown = 0;
  for (const KernelStat& k : r.kernels) {
    if (shown++ == top) break;
    os << "  " << std::setw(44) << std::left << k.name.substr(0, 43) << std::right
       << std::setw(12) << std::setprecision(1) << double(k.calls) / n << std::setw(12)
       << std::setprecision(1) << k.total_us / n << std::setw(10) << std::setprecision(2)
       << k.total_us / double(k.calls) << std::setw(14) << std::setprecision(1) << k.adds_us / n
       << "\n";
  }
  if (!r.window.empty()) {
    os << "  kernels in start order from the middle of the run (us from the first's start):\n";
    for (const auto& w : r.window)
      os << "    " << std::setw(40) << std::left << w.name.substr(0, 39) << std::right
         << std::setprecision(2) << std::setw(9) << w.start_us << std::setw(9) << w.end_us
         << std::setw(8) << w.end_us - w.start_us << "\n";
  }
  os.unsetf(std::ios::fixed);
}

}  // namespace siesta::bench
