#include <gtest/gtest.h>

#include <vector>

#include "siesta/kernels/device.hpp"

using namespace siesta::kernels;

TEST(Device, StatusExplainsWhyThereIsNoGpu) {
  auto s = cuda_status();
  if (s.gpus.empty()) {
    EXPECT_FALSE(s.error.empty());
  }
  EXPECT_EQ(cuda_available(), !s.gpus.empty());
}

TEST(Device, HostMemoryAndRssAreReadFromProc) {
  auto m = host_memory();
  EXPECT_GT(m.total_bytes, 0u);
  EXPECT_LE(m.available_bytes, m.total_bytes);
  uint64_t before = process_rss_bytes();
  std::vector<char> big(64 << 20, 1);
  EXPECT_GE(process_rss_bytes(), before + (32u << 20)) << "RSS must grow when 64 MiB is touched";
}
