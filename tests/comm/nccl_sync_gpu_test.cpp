// Weight sync through NCCL on one GPU: a communicator of size 1 whose root process hosts the
// engine too (the local receiver). Results are compared bit for bit with a direct copy, staging
// memory must be returned, and the watchdog must abort a broadcast whose peer never joins.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "comm_test_util.hpp"
#include "gpu_test.hpp"
#include "process.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace siesta::comm::test {
namespace {

#ifdef SIESTA_WITH_CUDA

#define CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << #x

// Device copies of host tensors; frees them at the end of the test.
struct GpuTensors {
  std::vector<void*> ptrs;
  std::vector<NamedTensor> tensors;
  GpuTensors() = default;
  GpuTensors(const GpuTensors&) = delete;
  ~GpuTensors() {
    for (void* p : ptrs) cudaFree(p);
  }
};

void upload(const HostTensors& h, GpuTensors& g) {
  for (const auto& t : h.tensors) {
    void* p = nullptr;
    ASSERT_EQ(cudaMalloc(&p, t.view.bytes()), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(p, t.view.data, t.view.bytes(), cudaMemcpyHostToDevice), cudaSuccess);
    g.ptrs.push_back(p);
    TensorView v = t.view;
    v.data = p;
    v.device = Device::cuda(0);
    g.tensors.push_back({t.name, v});
  }
  // The sync runs on non-blocking streams, which do not wait for legacy-stream copies.
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// The reference: each source as the engine should hold it, made by a direct copy (bf16 sources:
// cudaMemcpy device to device) or a host cast (fp32 sources, round to nearest even).
std::vector<std::vector<std::byte>> reference(const HostTensors& src, const GpuTensors& gsrc) {
  std::vector<std::vector<std::byte>> r;
  for (size_t i = 0; i < src.tensors.size(); ++i) {
    const auto& t = src.tensors[i];
    std::vector<std::byte> out(size_t(t.view.numel()) * 2);
    if (t.view.dtype == DType::BF16) {
      void* copy = nullptr;
      cudaMalloc(&copy, out.size());
      cudaMemcpy(copy, gsrc.tensors[i].view.data, out.size(), cudaMemcpyDeviceToDevice);
      cudaMemcpy(out.data(), copy, out.size(), cudaMemcpyDeviceToHost);
      cudaFree(copy);
    } else {
      convert_host(t.view.data, t.view.dtype, out.data(), DType::BF16, size_t(t.view.numel()));
    }
    r.push_back(std::move(out));
  }
  return r;
}

void expect_equal_to_reference(const GpuTensors& dst,
                               const std::vector<std::vector<std::byte>>& ref,
                               const std::string& what) {
  for (size_t i = 0; i < ref.size(); ++i) {
    std::vector<std::byte> got(ref[i].size());
    ASSERT_EQ(cudaMemcpy(got.data(), dst.tensors[i].view.data, got.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_TRUE(got == ref[i]) << what << ": tensor " << dst.tensors[i].name << " differs";
  }
}

std::vector<TensorSpec> model_with_a_large_tensor() {
  auto specs = tiny_model();
  specs.push_back({"extra.large", {3000, 1000}, DType::F32});  // 6 MB in bf16: spans buckets
  return specs;
}

TEST(NcclWeightSync, WorldOfOneMatchesDirectCopyBitForBit) {
  SIESTA_REQUIRE_GPU();
  NcclTransport t(make_unique_id(), 0, 1, 0, {20000});
  auto specs = model_with_a_large_tensor();
  auto hsrc = make_tensors(specs, true, 7), hdst = make_tensors(specs, false, 8);
  GpuTensors src, dst;
  upload(hsrc, src);
  upload(hdst, dst);
  auto ref = reference(hsrc, src);
  for (bool fuse : {true, false}) {
    SyncOptions so;
    so.bucket_bytes = 1 << 20;
    so.fuse_local = fuse;
    // Destinations back to garbage, so each mode proves itself.
    for (size_t i = 0; i < dst.tensors.size(); ++i)
      CUDA_OK(cudaMemset(dst.tensors[i].view.data, 0x5a, dst.tensors[i].view.bytes()));
    CUDA_OK(cudaDeviceSynchronize());
    WeightReceiver local(t, dst.tensors, so);
    SyncStats st = WeightSender(t, so).send(src.tensors, &local);
    EXPECT_TRUE(local.weights_valid());
    EXPECT_EQ(st.fused_local, fuse);
    EXPECT_GT(st.buckets, 10u);
    if (fuse) EXPECT_LT(st.peak_staging_bytes, size_t(1) << 20);  // descriptors only
    else EXPECT_GE(st.peak_staging_bytes, size_t(2) << 20);
    for (size_t i = 0; i < dst.tensors.size(); ++i)
      EXPECT_EQ(local.destinations()[i].view.data, dst.ptrs[i]);  // in place
    expect_equal_to_reference(dst, ref, fuse ? "fused" : "staged");
  }
}

TEST(NcclWeightSync, HostSourcesReachGpuDestinations) {
  SIESTA_REQUIRE_GPU();
  NcclTransport t(make_unique_id(), 0, 1, 0, {20000});
  auto specs = tiny_model();
  auto hsrc = make_tensors(specs, true, 3), hdst = make_tensors(specs, false, 4);
  GpuTensors gsrc, dst;
  upload(hsrc, gsrc);
  upload(hdst, dst);
  auto ref = reference(hsrc, gsrc);
  for (bool fuse : {true, false}) {
    SyncOptions so;
    so.bucket_bytes = 512 << 10;
    so.fuse_local = fuse;
    WeightReceiver local(t, dst.tensors, so);
    WeightSender(t, so).send(hsrc.tensors, &local);  // sources in host memory
    EXPECT_TRUE(local.weights_valid());
    expect_equal_to_reference(dst, ref, fuse ? "fused" : "staged");
  }
}

TEST(NcclWeightSync, StagingIsReleasedAfterTheSync) {
  SIESTA_REQUIRE_GPU();
  NcclTransport t(make_unique_id(), 0, 1, 0, {20000});
  auto specs = model_with_a_large_tensor();
  auto hsrc = make_tensors(specs, true, 7), hdst = make_tensors(specs, false, 8);
  GpuTensors src, dst;
  upload(hsrc, src);
  upload(hdst, dst);
  SyncOptions so;
  so.bucket_bytes = 32 << 20;  // two 32 MiB-capped buckets: the whole 13 MB stream, twice
  so.fuse_local = false;
  WeightReceiver local(t, dst.tensors, so);
  WeightSender(t, so).send(src.tensors, &local);  // warm: NCCL's own lazy allocations
  size_t free_before = 0, free_after = 0, total = 0;
  CUDA_OK(cudaMemGetInfo(&free_before, &total));
  SyncStats st = WeightSender(t, so).send(src.tensors, &local);
  CUDA_OK(cudaMemGetInfo(&free_after, &total));
  EXPECT_GT(st.peak_staging_bytes, size_t(20) << 20);
  // Everything the sync allocated is back (allow 2 MiB of allocator granularity).
  EXPECT_LE(free_before, free_after + (size_t(2) << 20))
      << "before " << free_before << " after " << free_after;
}

TEST(NcclWeightSync, ManifestMismatchLeavesTheEngineInvalid) {
  SIESTA_REQUIRE_GPU();
  NcclTransport t(make_unique_id(), 0, 1, 0, {20000});
  auto specs = tiny_model();
  auto bad = specs;
  bad[1].shape = {128};
  auto hsrc = make_tensors(specs, true, 3), hdst = make_tensors(bad, false, 4);
  GpuTensors src, dst;
  upload(hsrc, src);
  upload(hdst, dst);
  WeightReceiver local(t, dst.tensors);
  try {
    WeightSender(t).send(src.tensors, &local);
    FAIL() << "a mismatched manifest was accepted";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("shape [256] in the manifest, [128] at this rank"),
              std::string::npos) << e.what();
  }
  EXPECT_FALSE(local.weights_valid());
  EXPECT_FALSE(t.aborted());
}

// The watchdog case runs in a fresh process (this binary, filtered to the child test), so that a
// hang inside NCCL could only cost that process, which the parent kills.
TEST(NcclWatchdog, BroadcastWhosePeerNeverJoinsIsAborted) {
  SIESTA_REQUIRE_GPU();
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  auto r = siesta::test::run_process(
      self, {"--gtest_filter=NcclWatchdogChild.*"}, "SIESTA_COMM_WATCHDOG_CHILD=1", 90);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("[  PASSED  ] 1 test"), std::string::npos) << r.out << r.err;
  std::cout << r.out.substr(0, 2000);
}

TEST(NcclWatchdogChild, WorldOfTwoWithOneRank) {
  if (!std::getenv("SIESTA_COMM_WATCHDOG_CHILD")) GTEST_SKIP() << "runs as a child process only";
  const int timeout_ms = 3000;
  auto t0 = std::chrono::steady_clock::now();
  NcclTransport t(make_unique_id(), 0, 2, 0, {timeout_ms});
  void* buf = nullptr;
  CUDA_OK(cudaMalloc(&buf, 1 << 20));
  std::string err;
  try {
    t.broadcast(buf, 1 << 20, 0, Device::cuda(0));
  } catch (const CommError& e) {
    err = e.what();
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "watchdog: error after " << s << " s: " << err << "\n";
  EXPECT_NE(err.find("never joined"), std::string::npos) << err;
  EXPECT_TRUE(t.aborted());
  EXPECT_LT(s, timeout_ms / 1000.0 + 10.0);
  EXPECT_THROW(t.barrier(), CommError);  // unusable after the abort, and says so
  cudaFree(buf);
}

#else

TEST(NcclWeightSync, NeedsACudaBuild) {
  EXPECT_THROW(make_unique_id(), CommError);
  GTEST_SKIP() << "CPU-only build: the NCCL transport is not compiled in";
}

#endif

}  // namespace
}  // namespace siesta::comm::test
