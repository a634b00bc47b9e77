#include "sleep_guard.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace siesta::allocator::sleep_guard {

namespace {

// begin == 0: free slot; begin == 1: being written. Fixed-size so that the signal handler
// never allocates or locks.
struct Slot {
  std::atomic<uintptr_t> begin{0};
  uintptr_t end = 0;
  char name[128] = {};
  char tag[72] = {};
};
constexpr int kSlots = 8192;
Slot g_slots[kSlots];
struct sigaction g_previous;

void copy_truncated(char* dst, size_t cap, std::string_view s) {
  size_t n = s.size() < cap - 1 ? s.size() : cap - 1;
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

// Async-signal-safe message building.
struct Msg {
  char buf[512];
  size_t n = 0;
  void put(const char* s) {
    while (*s && n < sizeof buf - 1) buf[n++] = *s++;
  }
  void hex(uintptr_t v) {
    put("0x");
    char d[17];
    int i = 16;
    d[i] = '\0';
    do {
      d[--i] = "0123456789abcdef"[v & 15];
      v >>= 4;
    } while (v && i > 0);
    put(d + i);
  }
};

void on_segv(int sig, siginfo_t* info, void* context) {
  uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (auto& s : g_slots) {
    uintptr_t b = s.begin.load(std::memory_order_acquire);
    if (b > 1 && addr >= b && addr < s.end) {
      Msg m;
      m.put("siesta: access to sleeping allocation '");
      m.put(s.name);
      m.put("' (tag ");
      m.put(s.tag);
      m.put(") at ");
      m.hex(addr);
      m.put(": wake the tag first\n");
      ssize_t ignored = write(STDERR_FILENO, m.buf, m.n);
      (void)ignored;
      std::abort();
    }
  }
  if (g_previous.sa_flags & SA_SIGINFO) {
    g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler == SIG_DFL || g_previous.sa_handler == SIG_IGN) {
    // Returning re-runs the faulting instruction, which now gets the default action.
    signal(SIGSEGV, SIG_DFL);
  } else {
    g_previous.sa_handler(sig);
  }
}

}  // namespace

void install() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous);
  });
}

void add(void* ptr, uint64_t bytes, std::string_view name, std::string_view tag) {
  for (auto& s : g_slots) {
    uintptr_t expected = 0;
    if (!s.begin.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    s.end = reinterpret_cast<uintptr_t>(ptr) + bytes;
    copy_truncated(s.name, sizeof s.name, name);
    copy_truncated(s.tag, sizeof s.tag, tag);
    s.begin.store(reinterpret_cast<uintptr_t>(ptr), std::memory_order_release);
    return;
  }
}

void remove(void* ptr) {
  uintptr_t b = reinterpret_cast<uintptr_t>(ptr);
  for (auto& s : g_slots) {
    uintptr_t expected = b;
    if (s.begin.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) return;
  }
}

}  // namespace siesta::allocator::sleep_guard
