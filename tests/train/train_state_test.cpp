// TrainState: AdamW against a hand-computed reference, clipping, offload/restore, buckets.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "siesta/allocator/pool.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/train/error.hpp"
#include "siesta/train/train_state.hpp"

using namespace siesta;
using namespace siesta::train;

namespace {

struct Rig {
  std::unique_ptr<kernels::Ops> ops = kernels::make_cpu_ops();
  std::unique_ptr<allocator::Pool> pool = allocator::Pool::create({.device = Device::cpu()});
};

// A [2, 3] matrix (decayed), then a [3] norm weight (not decayed), with a padding gap.
std::vector<ParamTensor> two_tensors() {
  return {{"w", {2, 3}, 0}, {"norm", {3}, 8}};
}

}  // namespace

TEST(TrainState, AdamWStepEqualsHandComputedReference) {
  Rig rig;
  TrainState s(*rig.ops, *rig.pool, two_tensors(), 16);
  ASSERT_EQ(s.numel(), 16);
  std::vector<float> p0(16, 0.f);
  for (int i = 0; i < 6; ++i) p0[i] = 0.1f * float(i) - 0.2f;
  for (int i = 8; i < 11; ++i) p0[i] = 1.f;
  s.load_params(p0.data(), 16);
  const AdamWOptions o{.beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f};
  const double lr = 0.01;

  // Reference in double: m, v, bias corrections, decoupled decay on the matrix only.
  std::vector<double> p(p0.begin(), p0.end()), m(16, 0), v(16, 0);
  for (int step = 1; step <= 3; ++step) {
    std::vector<float> g(16, 0.f);
    for (int i = 0; i < 6; ++i) g[i] = 0.3f * float(i % 4) - 0.5f + 0.1f * float(step);
    for (int i = 8; i < 11; ++i) g[i] = -0.2f * float(step);
    std::memcpy(s.grads(), g.data(), 64);   // CPU backend: grads() is host memory
    s.adamw_update(lr, step, o);
    for (int i = 0; i < 16; ++i) {
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.99 * v[i] + 0.01 * double(g[i]) * g[i];
      const double mh = m[i] / (1 - std::pow(0.9, step)), vh = v[i] / (1 - std::pow(0.99, step));
      const double wd = i < 6 ? 0.1 : 0.0;
      p[i] -= lr * (mh / (std::sqrt(vh) + 1e-8) + wd * p[i]);
    }
  }
  for (int i = 0; i < 16; ++i) {
    EXPECT_NEAR(s.params()[i], p[i], 1e-6) << "param " << i;
    EXPECT_NEAR(s.adam_m()[i], m[i], 1e-7) << "m " << i;
    EXPECT_NEAR(s.adam_v()[i], v[i], 1e-6 * v[i] + 1e-12) << "v " << i;
  }
  // Padding never moves: zero grads, zero params, no decay effect.
  for (int i : {6, 7, 11, 15}) EXPECT_EQ(s.params()[i], 0.f);
}

TEST(TrainState, GradNormAndClipScaling) {
  Rig rig;
  TrainState s(*rig.ops, *rig.pool, two_tensors(), 16);
  s.zero_grads();
  s.grads()[0] = 3.f;
  s.grads()[9] = 4.f;
  EXPECT_NEAR(s.grad_norm(), 5.0, 1e-6);
  s.scale_grads(0.5f);
  EXPECT_NEAR(s.grad_norm(), 2.5, 1e-6);
}

TEST(TrainState, OffloadRestoreIsBitExactAndReleasesMemory) {
  Rig rig;
  std::vector<ParamTensor> t = {{"big", {256, 1024}, 0}};
  TrainState s(*rig.ops, *rig.pool, t);
  std::vector<float> p(256 * 1024);
  for (size_t i = 0; i < p.size(); ++i) p[i] = std::sin(float(i) * 0.001f) * 1e-3f + 1e-30f * float(i);
  s.load_params(p.data(), int64_t(p.size()));
  for (size_t i = 0; i < p.size(); ++i) s.grads()[i] = std::cos(float(i));
  s.adamw_update(1e-3, 1, {});
  std::vector<float> params(s.params(), s.params() + p.size()), m(s.adam_m(), s.adam_m() + p.size()),
      v(s.adam_v(), s.adam_v() + p.size());
  s.offload();
  EXPECT_TRUE(s.offloaded());
  EXPECT_TRUE(rig.pool->is_sleeping(kTagParams));
  EXPECT_TRUE(rig.pool->is_sleeping(kTagOptimizer));
  EXPECT_TRUE(rig.pool->is_sleeping(kTagGrads));
  for (const auto& ts : rig.pool->stats().tags)
    if (ts.tag == kTagParams || ts.tag == kTagOptimizer) {
      EXPECT_EQ(ts.mapped_bytes, 0u) << ts.tag;
      EXPECT_GE(ts.backed_up_bytes, uint64_t(p.size()) * 4) << ts.tag;
    }
  EXPECT_THROW(s.adamw_update(1e-3, 2, {}), TrainError);
  s.restore();
  EXPECT_EQ(std::memcmp(params.data(), s.params(), p.size() * 4), 0);
  EXPECT_EQ(std::memcmp(m.data(), s.adam_m(), p.size() * 4), 0);
  EXPECT_EQ(std::memcmp(v.data(), s.adam_v(), p.size() * 4), 0);
}

TEST(TrainState, OffloadKeepingWeightsLeavesThemForTheSyncThenMovesThemToo) {
  Rig rig;
  std::vector<ParamTensor> t = {{"w", {64, 64}, 0}};
  TrainState s(*rig.ops, *rig.pool, t);
  std::vector<float> p(size_t(s.numel()));
  for (size_t i = 0; i < p.size(); ++i) p[i] = float(i) * 0.5f - 3.f;
  s.load_params(p.data(), s.numel());
  for (size_t i = 0; i < p.size(); ++i) s.grads()[i] = std::cos(float(i));
  s.adamw_update(1e-3, 1, {});
  std::vector<float> params(s.params(), s.params() + p.size()), m(s.adam_m(), s.adam_m() + p.size());

  // Optimizer state and gradients leave; the weights stay mapped and can still be packed.
  s.offload(true);
  EXPECT_TRUE(s.offloaded());
  EXPECT_TRUE(s.weights_resident());
  EXPECT_TRUE(rig.pool->is_sleeping(kTagOptimizer));
  EXPECT_TRUE(rig.pool->is_sleeping(kTagGrads));
  EXPECT_FALSE(rig.pool->is_sleeping(kTagParams));
  const BucketPlan plan = s.plan_buckets(DType::F32, 1 << 20);
  std::vector<std::byte> bucket(1 << 20);
  EXPECT_NO_THROW(s.pack_bucket(plan, 0, bucket.data()));
  EXPECT_EQ(std::memcmp(bucket.data(), params.data(), p.size() * 4), 0);

  // A second, full offload moves the weights as well; packing is then refused.
  s.offload(false);
  EXPECT_FALSE(s.weights_resident());
  EXPECT_TRUE(rig.pool->is_sleeping(kTagParams));
  EXPECT_THROW(s.pack_bucket(plan, 0, bucket.data()), TrainError);

  s.restore();
  EXPECT_TRUE(s.weights_resident());
  EXPECT_EQ(std::memcmp(params.data(), s.params(), p.size() * 4), 0);
  EXPECT_EQ(std::memcmp(m.data(), s.adam_m(), p.size() * 4), 0);
}

TEST(TrainState, BucketsTileEveryTensorAndPackTheWeights) {
  Rig rig;
  std::vector<ParamTensor> t = {{"a", {10, 10}, 0}, {"b", {7}, 128}, {"c", {3, 50}, 256}};
  TrainState s(*rig.ops, *rig.pool, t);
  std::vector<float> p(size_t(s.numel()));
  for (size_t i = 0; i < p.size(); ++i) p[i] = float(i) * 0.25f - 7.f;
  s.load_params(p.data(), s.numel());
  for (DType dt : {DType::F32, DType::BF16}) {
    const BucketPlan plan = s.plan_buckets(dt, 128);   // smaller than tensors a and c
    std::map<std::string, std::vector<std::byte>> rebuilt;
    for (const auto& pt : t) rebuilt[pt.name].resize(size_t(pt.numel()) * dtype_size(dt));
    std::vector<std::byte> bucket(128);
    for (size_t b = 0; b < plan.buckets.size(); ++b) {
      EXPECT_LE(plan.buckets[b].used_bytes, 128u);
      s.pack_bucket(plan, b, bucket.data());
      for (const auto& e : plan.buckets[b].entries) {
        EXPECT_EQ(e.bucket_byte_offset % 64, 0u);
        std::memcpy(rebuilt[e.name].data() + e.tensor_byte_offset, bucket.data() + e.bucket_byte_offset,
                    e.bytes);
      }
    }
    auto exported = s.export_weights(dt);
    ASSERT_EQ(exported.size(), 3u);
    for (const auto& nt : exported) {
      EXPECT_EQ(nt.dtype, dt);
      EXPECT_EQ(rebuilt[nt.name], nt.data) << nt.name;
      const ParamTensor& pt = s.tensor(nt.name);
      for (int64_t i = 0; i < pt.numel(); ++i) {
        float want = p[size_t(pt.offset + i)], got;
        if (dt == DType::F32) std::memcpy(&got, nt.data.data() + 4 * i, 4);
        else {
          uint16_t h;
          std::memcpy(&h, nt.data.data() + 2 * i, 2);
          got = bf16_to_f32(h);
          want = bf16_to_f32(f32_to_bf16(want));
        }
        ASSERT_EQ(got, want) << nt.name << "[" << i << "]";
      }
    }
  }
  EXPECT_THROW(s.plan_buckets(DType::I32, 128), TrainError);
  EXPECT_THROW(s.plan_buckets(DType::BF16, 100), TrainError);
}

TEST(TrainState, OverlappingTensorsAreRefused) {
  Rig rig;
  std::vector<ParamTensor> t = {{"a", {4, 4}, 0}, {"b", {4}, 8}};
  EXPECT_THROW(TrainState(*rig.ops, *rig.pool, t), TrainError);
}
