// Bad use of the pool: each case gets an AllocatorError that says what was asked and what is
// allowed, and leaves the pool exactly as it was. Touching a sleeping allocation dies with a
// diagnostic naming it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cstring>

#include "siesta/allocator.hpp"

using namespace siesta::allocator;
using siesta::Device;
using ::testing::HasSubstr;

namespace {

constexpr uint64_t MiB = 1ull << 20;

std::unique_ptr<Pool> host_pool(uint64_t capacity = 0) {
  return Pool::create({Device::cpu(), 1 * MiB, capacity, 0});
}

// Runs fn, expects an AllocatorError whose message contains every needle.
template <class Fn>
void expect_error(Fn&& fn, std::initializer_list<const char*> needles) {
  try {
    fn();
    ADD_FAILURE() << "expected AllocatorError";
  } catch (const AllocatorError& e) {
    for (auto* n : needles) EXPECT_THAT(e.what(), HasSubstr(n));
  }
}

// What must not change when a call is refused.
struct Snapshot {
  std::vector<std::tuple<std::string, uint64_t, uint64_t, uint64_t, bool>> tags;
  uint64_t backup_used;
  bool operator==(const Snapshot&) const = default;
};
Snapshot snapshot(const Pool& p) {
  auto s = p.stats();
  Snapshot snap{{}, s.backup_used_bytes};
  for (auto& t : s.tags)
    snap.tags.emplace_back(t.tag, t.allocations, t.mapped_bytes, t.backed_up_bytes, t.sleeping);
  return snap;
}

}  // namespace

TEST(PoolErrors, WakingAnAwakeTagIsRefused) {
  auto pool = host_pool();
  pool->allocate(4096, "weights", "w");
  auto before = snapshot(*pool);
  expect_error([&] { pool->wake({"weights"}); }, {"wake(weights)", "already awake"});
  EXPECT_EQ(snapshot(*pool), before);
}

TEST(PoolErrors, SleepingASleepingTagIsRefusedAndTheOtherTagsStayAwake) {
  auto pool = host_pool();
  pool->allocate(4096, "weights", "w");
  pool->allocate(4096, "kv_cache", "k");
  pool->sleep({"weights"}, SleepMode::Offload);
  auto before = snapshot(*pool);
  // kv_cache is fine, weights is not: nothing at all may happen.
  expect_error([&] { pool->sleep({"kv_cache", "weights"}, SleepMode::Discard); },
               {"sleep(weights)", "already asleep"});
  EXPECT_EQ(snapshot(*pool), before);
  EXPECT_FALSE(pool->is_sleeping("kv_cache"));
}

TEST(PoolErrors, FreeingWhileAsleepIsRefused) {
  auto pool = host_pool();
  auto a = pool->allocate(4096, "optimizer", "adam.m");
  pool->sleep({"optimizer"}, SleepMode::Offload);
  auto before = snapshot(*pool);
  expect_error([&] { pool->free(a); }, {"free('adam.m')", "asleep", "wake the tag"});
  EXPECT_EQ(snapshot(*pool), before);
  pool->wake({"optimizer"});
  pool->free(a);
}

TEST(PoolErrors, FreeingTwiceIsRefused) {
  auto pool = host_pool();
  auto a = pool->allocate(4096, "buffers", "b");
  pool->free(a);
  expect_error([&] { pool->free(a); }, {"not a live allocation"});
}

TEST(PoolErrors, UnknownTagsAreRefusedNamingTheTagsThatExist) {
  auto pool = host_pool();
  pool->allocate(4096, "weights", "w");
  expect_error([&] { pool->sleep({"kv_cache"}, SleepMode::Discard); },
               {"no allocation in this pool carries tag 'kv_cache'", "tags here: weights"});
  expect_error([&] { pool->wake({"kv_cache"}); }, {"'kv_cache'"});
  expect_error([&] { pool->is_sleeping("kv_cache"); }, {"'kv_cache'"});
  expect_error([&] { pool->sleep({}, SleepMode::Discard); }, {"at least one tag"});
  EXPECT_FALSE(pool->is_sleeping("weights"));
}

TEST(PoolErrors, MalformedTagNamesAreRefused) {
  auto pool = host_pool();
  expect_error([&] { pool->allocate(4096, "KV-Cache", "x"); }, {"invalid memory tag 'KV-Cache'", "[a-z0-9_]"});
  expect_error([&] { pool->sleep({""}, SleepMode::Discard); }, {"invalid memory tag"});
  EXPECT_TRUE(pool->stats().tags.empty());
}

TEST(PoolErrors, AllocatingInASleepingTagOrZeroBytesIsRefused) {
  auto pool = host_pool();
  pool->allocate(4096, "kv_cache", "k0");
  pool->sleep({"kv_cache"}, SleepMode::Discard);
  expect_error([&] { pool->allocate(4096, "kv_cache", "k1"); }, {"asleep", "wake it before"});
  expect_error([&] { pool->allocate(0, "buffers", "empty"); }, {"size must be > 0"});
  EXPECT_EQ(pool->stats().tags.size(), 1u);
}

TEST(PoolErrors, AllocatingBeyondTheBudgetIsRefused) {
  auto pool = host_pool(8 * MiB);
  pool->allocate(6 * MiB, "weights", "w");
  auto before = snapshot(*pool);
  expect_error([&] { pool->allocate(4 * MiB, "kv_cache", "k"); },
               {"needs 4.00 MiB", "budget on cpu is 8.00 MiB", "state unchanged"});
  EXPECT_EQ(snapshot(*pool), before);
}

TEST(PoolErrors, WakeBeyondTheBudgetStaysAsleepAndALaterWakeSucceeds) {
  auto pool = host_pool(8 * MiB);
  auto a = pool->allocate(4 * MiB, "train_params", "p");
  std::memset(a.ptr, 0x5a, a.bytes);
  pool->sleep({"train_params"}, SleepMode::Offload);
  auto b = pool->allocate(6 * MiB, "kv_cache", "k");  // fits while train_params sleeps
  auto before = snapshot(*pool);
  expect_error([&] { pool->wake({"train_params"}); }, {"wake(train_params) needs", "budget"});
  EXPECT_EQ(snapshot(*pool), before);
  EXPECT_TRUE(pool->is_sleeping("train_params"));
  pool->free(b);
  pool->wake({"train_params"});
  EXPECT_EQ(static_cast<uint8_t*>(a.ptr)[0], 0x5a);
  EXPECT_EQ(static_cast<uint8_t*>(a.ptr)[a.bytes - 1], 0x5a);
}

TEST(PoolErrors, CudaPoolWithoutCudaSupportOrDeviceIsRefused) {
  try {
    auto pool = Pool::create({Device::cuda(999), 1 * MiB, 0, 0});
    ADD_FAILURE() << "cuda:999 cannot exist";
  } catch (const AllocatorError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cuda:999"));
  }
}

TEST(PoolDeathTest, TouchingASleepingAllocationDiesNamingItAndItsTag) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto pool = host_pool();
        auto a = pool->allocate(64 * 1024, "kv_cache", "layer0.kv");
        pool->sleep({"kv_cache"}, SleepMode::Discard);
        volatile uint8_t* p = static_cast<uint8_t*>(a.ptr) + 100;
        *p = 1;
      },
      "siesta: access to sleeping allocation 'layer0\\.kv' \\(tag kv_cache\\) at 0x[0-9a-f]+: "
      "wake the tag first");
}

TEST(PoolDeathTest, OtherFaultsStillReachTheDefaultHandler) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto pool = host_pool();
        auto a = pool->allocate(4096, "kv_cache", "k");
        pool->free(a);  // an unmapped range that no sleeping allocation covers
        volatile uint8_t* p = static_cast<uint8_t*>(a.ptr);
        *p = 1;
      },
      ::testing::KilledBySignal(SIGSEGV), "");
}
