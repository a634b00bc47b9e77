// Host-backend behaviour of the sleep-capable pool: content, real release of memory, cycles
// that leave no trace, events, stats and thread safety. Error cases are in
// pool_errors_test.cpp; the CUDA backend is covered by pool_gpu_test.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "siesta/allocator.hpp"
#include "siesta/kernels/device.hpp"

using namespace siesta::allocator;
using siesta::Device;

namespace {

constexpr uint64_t MiB = 1ull << 20;

std::unique_ptr<Pool> host_pool(uint64_t capacity = 0, uint64_t chunk = 1 * MiB) {
  return Pool::create({Device::cpu(), chunk, capacity, 0});
}

std::vector<uint8_t> pattern(uint64_t bytes, uint32_t seed) {
  std::vector<uint8_t> v(bytes);
  std::mt19937 rng(seed);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

int mapping_count() {
  std::ifstream f("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(f, line);) ++n;
  return n;
}

const TagStats& tag_stats(const PoolStats& s, const std::string& tag) {
  for (auto& t : s.tags)
    if (t.tag == tag) return t;
  throw std::runtime_error("no stats for tag " + tag);
}

}  // namespace

TEST(PoolHost, OffloadThenWakeRestoresContentBitExactlyAtTheSameAddress) {
  auto pool = host_pool();
  // Sizes that are not page or chunk multiples, spread over two tags.
  auto w = pool->allocate(3 * MiB + 123, "weights", "layer0.w");
  auto k = pool->allocate(777, "kv_cache", "layer0.kv");
  auto w_data = pattern(w.bytes, 1), k_data = pattern(k.bytes, 2);
  std::memcpy(w.ptr, w_data.data(), w.bytes);
  std::memcpy(k.ptr, k_data.data(), k.bytes);

  pool->sleep({"weights", "kv_cache"}, SleepMode::Offload);
  auto asleep = pool->stats();
  EXPECT_TRUE(pool->is_sleeping("weights"));
  EXPECT_EQ(tag_stats(asleep, "weights").mapped_bytes, 0u);
  EXPECT_GE(tag_stats(asleep, "weights").backed_up_bytes, w.bytes);
  EXPECT_GE(tag_stats(asleep, "kv_cache").backed_up_bytes, k.bytes);

  pool->wake({"weights", "kv_cache"});
  EXPECT_FALSE(pool->is_sleeping("kv_cache"));
  EXPECT_EQ(std::memcmp(w.ptr, w_data.data(), w.bytes), 0);
  EXPECT_EQ(std::memcmp(k.ptr, k_data.data(), k.bytes), 0);
  auto awake = pool->stats();
  EXPECT_EQ(tag_stats(awake, "weights").backed_up_bytes, 0u);
  EXPECT_EQ(awake.backup_used_bytes, 0u);
}

TEST(PoolHost, DiscardDropsContentSoWakeGivesZeros) {
  auto pool = host_pool();
  auto a = pool->allocate(2 * MiB + 5, "kv_cache", "kv");
  std::memset(a.ptr, 0xab, a.bytes);
  pool->sleep({"kv_cache"}, SleepMode::Discard);
  EXPECT_EQ(tag_stats(pool->stats(), "kv_cache").backed_up_bytes, 0u);
  pool->wake({"kv_cache"});
  std::vector<uint8_t> zeros(a.bytes, 0);
  EXPECT_EQ(std::memcmp(a.ptr, zeros.data(), a.bytes), 0);
}

TEST(PoolHost, SleepLowersRssByAtLeast99PercentOfTheSleptBytes) {
  auto pool = host_pool(0, 4 * MiB);
  const uint64_t bytes = 64 * MiB;
  auto a = pool->allocate(bytes, "weights", "big");
  std::memset(a.ptr, 1, bytes);  // make every page resident
  uint64_t rss_awake = siesta::kernels::process_rss_bytes();
  pool->sleep({"weights"}, SleepMode::Discard);
  uint64_t rss_asleep = siesta::kernels::process_rss_bytes();
  ASSERT_GT(rss_awake, rss_asleep);
  EXPECT_GE(double(rss_awake - rss_asleep), 0.99 * double(bytes))
      << "rss awake " << rss_awake << " asleep " << rss_asleep;
  pool->wake({"weights"});
  EXPECT_EQ(static_cast<uint8_t*>(a.ptr)[bytes - 1], 0);
}

TEST(PoolHost, ThousandSleepWakeCyclesLeaveRssMappingsAndBackupAtBaseline) {
  auto pool = host_pool(0, 64 * 1024);
  auto w = pool->allocate(256 * 1024, "weights", "w");
  auto k = pool->allocate(100 * 1024 + 7, "kv_cache", "k");
  auto w_data = pattern(w.bytes, 3);
  std::memcpy(w.ptr, w_data.data(), w.bytes);
  auto cycle = [&] {
    pool->sleep({"weights"}, SleepMode::Offload);
    pool->sleep({"kv_cache"}, SleepMode::Discard);
    pool->wake({"kv_cache", "weights"});
    std::memset(k.ptr, 7, k.bytes);
  };
  cycle();  // the first cycle sizes the backup pool, which is then reused
  uint64_t rss0 = siesta::kernels::process_rss_bytes();
  int maps0 = mapping_count();
  uint64_t backup0 = pool->stats().backup_capacity_bytes;
  for (int i = 0; i < 1000; ++i) cycle();
  EXPECT_EQ(mapping_count(), maps0);
  EXPECT_LE(siesta::kernels::process_rss_bytes(), rss0 + 1 * MiB);  // slack: libc, gtest
  EXPECT_EQ(pool->stats().backup_capacity_bytes, backup0);
  EXPECT_EQ(std::memcmp(w.ptr, w_data.data(), w.bytes), 0);
}

TEST(PoolHost, StatsCountReservedMappedAndBackedUpBytesPerTag) {
  auto pool = host_pool();
  pool->allocate(5000, "optimizer", "m");
  pool->allocate(4096, "optimizer", "v");
  pool->allocate(1, "buffers", "tmp");
  auto s = pool->stats();
  ASSERT_EQ(s.tags.size(), 2u);
  EXPECT_EQ(s.tags[0].tag, "buffers");  // sorted by tag
  auto& opt = tag_stats(s, "optimizer");
  EXPECT_EQ(opt.allocations, 2u);
  EXPECT_EQ(opt.reserved_bytes, 8192u + 4096u);  // rounded up to the 4 KiB page
  EXPECT_EQ(opt.mapped_bytes, opt.reserved_bytes);
  pool->sleep({"optimizer"}, SleepMode::Offload);
  s = pool->stats();
  EXPECT_EQ(tag_stats(s, "optimizer").mapped_bytes, 0u);
  EXPECT_EQ(tag_stats(s, "optimizer").backed_up_bytes, 8192u + 4096u);
  EXPECT_EQ(tag_stats(s, "buffers").mapped_bytes, 4096u);
  ASSERT_TRUE(s.last_transition.has_value());
  EXPECT_EQ(s.last_transition->kind, PoolEvent::Kind::Sleep);
}

TEST(PoolHost, ListenerSeesEveryTransitionWithDeviceMemoryBeforeAndAfter) {
  auto pool = host_pool(16 * MiB);
  std::vector<PoolEvent> events;
  pool->set_listener([&](const PoolEvent& e) { events.push_back(e); });
  auto a = pool->allocate(4 * MiB, "train_grads", "g");
  pool->sleep({"train_grads"}, SleepMode::Offload);
  pool->wake({"train_grads"});
  pool->free(a);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].kind, PoolEvent::Kind::Allocate);
  EXPECT_EQ(events[0].name, "g");
  EXPECT_EQ(events[0].after.used_bytes - events[0].before.used_bytes, 4 * MiB);
  EXPECT_EQ(events[1].kind, PoolEvent::Kind::Sleep);
  EXPECT_EQ(events[1].mode, SleepMode::Offload);
  EXPECT_EQ(events[1].tags, std::vector<Tag>{"train_grads"});
  EXPECT_EQ(events[1].bytes, 4 * MiB);
  EXPECT_EQ(events[1].copied_bytes, 4 * MiB);
  EXPECT_EQ(events[1].before.used_bytes, 4 * MiB);
  EXPECT_EQ(events[1].after.used_bytes, 0u);
  EXPECT_EQ(events[1].after.free_bytes, 16 * MiB);
  EXPECT_EQ(events[2].kind, PoolEvent::Kind::Wake);
  EXPECT_EQ(events[2].after.used_bytes, 4 * MiB);
  EXPECT_EQ(events[3].kind, PoolEvent::Kind::Free);
  EXPECT_EQ(events[3].after.used_bytes, 0u);
  for (auto& e : events) EXPECT_GE(e.duration_ms, 0.0);
}

TEST(PoolHost, FreeReturnsTheAddressRangeAndForgetsTheTag) {
  auto pool = host_pool();
  int maps0 = mapping_count();
  auto a = pool->allocate(1 * MiB, "activations", "act");
  pool->free(a);
  EXPECT_EQ(mapping_count(), maps0);
  EXPECT_TRUE(pool->stats().tags.empty());
}

TEST(PoolHost, ThreadsSleepingAndWakingDifferentTagsKeepTheirContent) {
  auto pool = host_pool(0, 64 * 1024);
  auto run = [&](const std::string& tag, uint32_t seed) {
    auto a = pool->allocate(128 * 1024, tag, tag + ".0");
    auto data = pattern(a.bytes, seed);
    std::memcpy(a.ptr, data.data(), a.bytes);
    for (int i = 0; i < 200; ++i) {
      pool->sleep({tag}, SleepMode::Offload);
      pool->wake({tag});
      auto b = pool->allocate(4096, tag, tag + ".tmp");  // allocations interleave too
      pool->free(b);
    }
    return std::memcmp(a.ptr, data.data(), a.bytes) == 0;
  };
  bool ok1 = false, ok2 = false;
  std::thread t1([&] { ok1 = run("weights", 11); });
  std::thread t2([&] { ok2 = run("train_params", 12); });
  t1.join();
  t2.join();
  EXPECT_TRUE(ok1);
  EXPECT_TRUE(ok2);
}
