// The trainer on a GPU (bf16 compute, fp32 master weights and AdamW state in a CUDA pool):
// its step agrees with the CPU trainer from the same initial weights, it learns a fixed batch,
// and offload/restore of its state is bit-exact and really returns the device memory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gpu_test.hpp"
#include "siesta/model/presets.hpp"
#include "train_fixture.hpp"

namespace siesta::train::testing {
namespace {

struct GpuRig {
  std::unique_ptr<kernels::Ops> ops = kernels::make_cuda_ops(0);
  std::unique_ptr<allocator::Pool> pool = allocator::Pool::create({.device = Device::cuda(0)});
};

uint64_t device_used(allocator::Pool& p) { return p.device_memory().used_bytes; }

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

TEST(TrainerGpu, FirstStepAgreesWithTheCpuTrainerAndTheLossFalls) {
  SIESTA_REQUIRE_GPU();
  CpuRig cpu;
  GpuRig gpu;
  TrainerOptions o = tiny_options();
  auto tc = cpu.make(o, 5);
  Trainer tg(tiny_config(), o, *gpu.ops, *gpu.pool);
  tg.init_random(5);   // same fp32 master weights (the init runs on the host)
  ASSERT_EQ(tg.master_weights_host(), tc->master_weights_host());
  const TrainBatch b = sft_batch(0, 8);
  const StepStats sc = tc->train_step(b), sg = tg.train_step(b);
  std::printf("first step: loss cpu %.6f gpu %.6f, grad norm cpu %.6f gpu %.6f\n", sc.loss,
              sg.loss, sc.grad_norm, sg.grad_norm);
  // bf16 activations with fp32 accumulation: 2% on the loss, 5% on the gradient norm.
  EXPECT_NEAR(sg.loss, sc.loss, 2e-2 * std::fabs(sc.loss));
  EXPECT_NEAR(sg.grad_norm, sc.grad_norm, 5e-2 * sc.grad_norm);
  EXPECT_EQ(sg.tokens, sc.tokens);
  double last = sg.loss;
  for (int i = 0; i < 15; ++i) last = tg.train_step(b).loss;
  std::printf("loss on the fixed batch after 16 GPU steps: %.4f (first %.4f)\n", last, sg.loss);
  EXPECT_LT(last, 0.8 * sg.loss) << "the GPU trainer should fit a fixed batch";
}

// The small preset's state (fp32 params + m + v, ~290 MB) is large enough that the device's
// used memory shows the offload.
TEST(TrainerGpu, OffloadRestoreIsBitExactAndReleasesDeviceMemory) {
  SIESTA_REQUIRE_GPU();
  GpuRig gpu;
  TrainerOptions o = tiny_options();
  o.max_seq_len = 64;
  const auto cfg = model::load_preset("small");
  Trainer t(cfg, o, *gpu.ops, *gpu.pool);
  t.init_random(3);
  const TrainBatch b = sft_batch(0, 8);
  t.train_step(b);   // moments non-zero
  const auto weights = t.master_weights_host();
  const uint64_t state_bytes = uint64_t(model::weights_numel(cfg)) * 12;
  const uint64_t used_awake = device_used(*gpu.pool);
  // A checkpoint holds the parameters and both AdamW moments: the same bytes before the offload
  // and after the restore say nothing was lost (bit-exact, free of the GPU's summation order).
  const auto dir = std::filesystem::temp_directory_path();
  const auto before = dir / ("siesta_offload_before_" + std::to_string(::getpid()) + ".ckpt");
  const auto after = dir / ("siesta_offload_after_" + std::to_string(::getpid()) + ".ckpt");
  t.save_checkpoint(before, {});
  t.offload_state();
  EXPECT_TRUE(t.state_offloaded());
  const uint64_t used_off = device_used(*gpu.pool);
  for (const auto& s : gpu.pool->stats().tags) {
    if (s.tag == kTagParams || s.tag == kTagOptimizer || s.tag == kTagGrads) {
      EXPECT_EQ(s.mapped_bytes, 0u) << s.tag << " still mapped while offloaded";
    }
  }
  std::printf("device used: awake %.1f MiB, offloaded %.1f MiB, state %.1f MiB\n",
              double(used_awake) / (1 << 20), double(used_off) / (1 << 20),
              double(state_bytes) / (1 << 20));
  EXPECT_GE(used_awake - std::min(used_awake, used_off), state_bytes)
      << "params, grads and moments should all leave the device";
  t.restore_state();
  EXPECT_FALSE(t.state_offloaded());
  EXPECT_EQ(t.master_weights_host(), weights) << "restore must be bit-exact";
  t.save_checkpoint(after, {});
  auto bytes = [](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  const std::string b0 = bytes(before), b1 = bytes(after);
  EXPECT_GT(b0.size(), state_bytes / 2);
  EXPECT_TRUE(b0 == b1) << "parameters and moments must come back bit-exact";
  std::filesystem::remove(before);
  std::filesystem::remove(after);

  // The restored trainer computes with its restored weights (the compute copy is refreshed):
  // its next loss is a twin's that never slept, up to the GPU's summation order.
  Trainer twin(cfg, o, *gpu.ops, *gpu.pool);
  twin.init_random(3);
  twin.train_step(b);
  ASSERT_LT(max_abs_diff(twin.master_weights_host(), weights), 1e-5);
  const double a = t.train_step(b).loss, c = twin.train_step(b).loss;
  EXPECT_NEAR(a, c, 1e-3 * std::fabs(c));
}

}  // namespace
}  // namespace siesta::train::testing
