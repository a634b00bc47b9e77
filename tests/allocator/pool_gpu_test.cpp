// CUDA-backend behaviour of the pool, checked against the driver's own accounting
// (cudaMemGetInfo): content survives offload, memory really returns to the driver, CUDA
// graphs captured before a sleep replay after the wake, and an out-of-memory wake leaves the
// pool asleep and recoverable. Skips without a GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "gpu_test.hpp"
#include "siesta/allocator.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>

#include "fill_kernel.hpp"

using namespace siesta::allocator;
using siesta::Device;
using ::testing::HasSubstr;

namespace {

constexpr uint64_t MiB = 1ull << 20, GiB = 1ull << 30;

#define CK(x) ASSERT_EQ((x), cudaSuccess) << #x

uint64_t device_free() {
  size_t f = 0, t = 0;
  cudaMemGetInfo(&f, &t);
  return f;
}
uint64_t device_used() {
  size_t f = 0, t = 0;
  cudaMemGetInfo(&f, &t);
  return t - f;
}

std::vector<uint8_t> pattern(uint64_t bytes, uint32_t seed) {
  std::vector<uint8_t> v(bytes);
  std::mt19937_64 rng(seed);
  for (uint64_t i = 0; i + 8 <= bytes; i += 8) {
    uint64_t r = rng();
    std::memcpy(&v[i], &r, 8);
  }
  for (uint64_t i = bytes / 8 * 8; i < bytes; ++i) v[i] = uint8_t(rng());
  return v;
}

bool device_equals(const Allocation& a, const std::vector<uint8_t>& expected) {
  std::vector<uint8_t> back(a.bytes);
  if (cudaMemcpy(back.data(), a.ptr, a.bytes, cudaMemcpyDeviceToHost) != cudaSuccess) return false;
  return std::memcmp(back.data(), expected.data(), a.bytes) == 0;
}

}  // namespace

TEST(PoolGpu, OffloadThenWakeRestoresContentBitExactlyAndFreesDeviceMemory) {
  SIESTA_REQUIRE_GPU();
  auto pool = Pool::create({Device::cuda(0), 64 * MiB, 0, 0});
  auto w = pool->allocate(300 * MiB + 4099, "weights", "w");  // 5 chunks, ragged tail
  auto k = pool->allocate(5 * MiB, "kv_cache", "k");
  auto w_data = pattern(w.bytes, 1), k_data = pattern(k.bytes, 2);
  CK(cudaMemcpy(w.ptr, w_data.data(), w.bytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(k.ptr, k_data.data(), k.bytes, cudaMemcpyHostToDevice));
  void* w_ptr = w.ptr;

  uint64_t free_awake = device_free();
  pool->sleep({"weights", "kv_cache"}, SleepMode::Offload);
  uint64_t released = device_free() - free_awake;
  EXPECT_GE(double(released), 0.99 * double(w.bytes + k.bytes)) << "released " << released;
  auto s = pool->stats();
  for (auto& t : s.tags) EXPECT_EQ(t.mapped_bytes, 0u) << t.tag;
  EXPECT_EQ(s.granularity_bytes % (2 * MiB), 0u);

  pool->wake({"weights", "kv_cache"});
  EXPECT_EQ(w.ptr, w_ptr);
  EXPECT_TRUE(device_equals(w, w_data));
  EXPECT_TRUE(device_equals(k, k_data));
  EXPECT_LE(device_free(), free_awake + 4 * MiB);  // the memory is in use again
}

TEST(PoolGpu, DiscardReleasesMemoryToTheDriverAndWakeMapsUsableMemory) {
  SIESTA_REQUIRE_GPU();
  auto pool = Pool::create({Device::cuda(0), 256 * MiB, 0, 0});
  std::vector<PoolEvent> events;
  pool->set_listener([&](const PoolEvent& e) { events.push_back(e); });
  auto a = pool->allocate(1 * GiB, "kv_cache", "kv");
  CK(cudaMemset(a.ptr, 0x11, a.bytes));
  CK(cudaDeviceSynchronize());
  pool->sleep({"kv_cache"}, SleepMode::Discard);
  ASSERT_EQ(events.back().kind, PoolEvent::Kind::Sleep);
  auto& e = events.back();
  EXPECT_GE(double(e.after.free_bytes - e.before.free_bytes), 0.99 * double(a.bytes));
  EXPECT_EQ(e.copied_bytes, 0u);
  pool->wake({"kv_cache"});
  std::vector<uint8_t> ones(a.bytes, 0x22);
  CK(cudaMemcpy(a.ptr, ones.data(), a.bytes, cudaMemcpyHostToDevice));
  EXPECT_TRUE(device_equals(a, ones));
  EXPECT_GE(double(events.back().before.free_bytes - events.back().after.free_bytes),
            0.99 * double(a.bytes));
}

TEST(PoolGpu, SleepingEverythingLeavesOnlyTheContextPlusOnePercentOfThePool) {
  SIESTA_REQUIRE_GPU();
  auto pool = Pool::create({Device::cuda(0), 1 * GiB, 0, 0});
  uint64_t context = device_used();  // the context and whatever else runs on this GPU
  const uint64_t pool_bytes = 4 * GiB;
  auto w = pool->allocate(2 * GiB, "weights", "w");
  pool->allocate(1536 * MiB, "kv_cache", "kv");
  pool->allocate(512 * MiB, "buffers", "buf");
  auto w_data = pattern(64 * MiB, 7);
  CK(cudaMemcpy(w.ptr, w_data.data(), w_data.size(), cudaMemcpyHostToDevice));
  EXPECT_GE(device_used(), context + pool_bytes);
  pool->sleep({"weights"}, SleepMode::Offload);
  pool->sleep({"kv_cache", "buffers"}, SleepMode::Discard);
  EXPECT_LE(device_used(), context + pool_bytes / 100)
      << "context " << context << " used " << device_used();
  pool->wake({"weights", "kv_cache", "buffers"});
  std::vector<uint8_t> back(w_data.size());
  CK(cudaMemcpy(back.data(), w.ptr, back.size(), cudaMemcpyDeviceToHost));
  EXPECT_EQ(std::memcmp(back.data(), w_data.data(), back.size()), 0);
}

TEST(PoolGpu, GraphCapturedBeforeSleepReplaysIntoTheSameAddressesAfterWake) {
  SIESTA_REQUIRE_GPU();
  auto pool = Pool::create({Device::cuda(0), 2 * MiB, 0, 0});  // many small chunks
  auto a = pool->allocate(64 * MiB, "buffers", "graph_out");
  size_t n = a.bytes / 4;
  auto* p = static_cast<uint32_t*>(a.ptr);
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  launch_fill_pattern(p, n, 42, s);
  CK(cudaStreamEndCapture(s, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));

  for (auto mode : {SleepMode::Discard, SleepMode::Offload}) {
    pool->sleep({"buffers"}, mode);
    pool->wake({"buffers"});
    CK(cudaMemset(a.ptr, 0, a.bytes));
    CK(cudaGraphLaunch(exec, s));
    CK(cudaStreamSynchronize(s));
    std::vector<uint32_t> back(n);
    CK(cudaMemcpy(back.data(), p, a.bytes, cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) bad += back[i] != fill_pattern_value(i, 42);
    EXPECT_EQ(bad, 0u) << to_string(mode);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

TEST(PoolGpu, WakeWithoutDeviceMemoryFailsCleanlyAndALaterWakeSucceeds) {
  SIESTA_REQUIRE_GPU();
  auto pool = Pool::create({Device::cuda(0), 256 * MiB, 0, 0});
  auto a = pool->allocate(2 * GiB, "train_params", "params");
  auto data = pattern(a.bytes, 9);
  CK(cudaMemcpy(a.ptr, data.data(), a.bytes, cudaMemcpyHostToDevice));
  pool->sleep({"train_params"}, SleepMode::Offload);

  // Leave ~1 GiB free: the wake maps about half its chunks, then must undo them.
  void* hog = nullptr;
  uint64_t hog_bytes = device_free() - 1 * GiB;
  CK(cudaMalloc(&hog, hog_bytes));
  uint64_t used_before = device_used();
  try {
    pool->wake({"train_params"});
    ADD_FAILURE() << "wake should run out of device memory";
  } catch (const AllocatorError& e) {
    EXPECT_THAT(e.what(), HasSubstr("wake(train_params) needs 2.00 GiB"));
    EXPECT_THAT(e.what(), HasSubstr("free of"));
  }
  EXPECT_TRUE(pool->is_sleeping("train_params"));
  auto s = pool->stats();
  EXPECT_EQ(s.tags[0].mapped_bytes, 0u);
  EXPECT_GE(s.tags[0].backed_up_bytes, a.bytes);
  EXPECT_LE(device_used(), used_before + 32 * MiB);  // partial mappings (256 MiB each) undone

  CK(cudaFree(hog));
  pool->wake({"train_params"});
  EXPECT_TRUE(device_equals(a, data));
}

TEST(PoolGpu, PinnedBackupIsAllocatedOnceAndReused) {
  SIESTA_REQUIRE_GPU();
  auto pool = Pool::create({Device::cuda(0), 64 * MiB, 0, 0});
  pool->allocate(128 * MiB, "optimizer", "m");
  pool->sleep({"optimizer"}, SleepMode::Offload);
  pool->wake({"optimizer"});
  uint64_t capacity = pool->stats().backup_capacity_bytes;
  EXPECT_GE(capacity, 128 * MiB);
  for (int i = 0; i < 5; ++i) {
    pool->sleep({"optimizer"}, SleepMode::Offload);
    pool->wake({"optimizer"});
  }
  EXPECT_EQ(pool->stats().backup_capacity_bytes, capacity);
}

#else

TEST(PoolGpu, SkippedInABuildWithoutCuda) { GTEST_SKIP() << "built without CUDA support"; }

#endif
