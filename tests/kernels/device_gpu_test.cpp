#include "gpu_test.hpp"

using namespace siesta::kernels;

TEST(DeviceGpu, ReportsHopperClassDeviceWithMemory) {
  SIESTA_REQUIRE_GPU();
  auto s = cuda_status();
  ASSERT_FALSE(s.gpus.empty());
  const auto& g = s.gpus[0];
  EXPECT_FALSE(g.name.empty());
  EXPECT_GT(g.total_bytes, 1ull << 30);
  EXPECT_GT(g.free_bytes, 0u);
  EXPECT_LE(g.free_bytes, g.total_bytes);
  EXPECT_GT(s.driver_version, 0);
}
