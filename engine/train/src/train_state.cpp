// Trainer state buffers in allocator pools: AdamW over them, offload/restore, checkpoint
// sections and weight export.
#include "siesta/train/train_state.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "siesta/train/error.hpp"

namespace siesta::train {
namespace {

constexpr uint64_t kBucketAlign = 64;   // entries start 64-byte aligned inside a bucket

uint64_t fnv_mix(uint64_t h, const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace

TrainState::TrainState(kernels::Ops& ops, allocator::Pool& pool, std::vector<ParamTensor> tensors,
                       int64_t total_numel)
    : ops_(ops), pool_(pool), tensors_(std::move(tensors)) {
  if (!(pool.options().device == ops.device()))
    throw TrainError("TrainState: the pool is on " + pool.options().device.str() +
                     " but the ops run on " + ops.device().str() + " (they must match)");
  if (tensors_.empty()) throw TrainError("TrainState: no parameter tensors given");
  std::vector<const ParamTensor*> by_offset;
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](auto* a, auto* b) { return a->offset < b->offset; });
  int64_t end = 0;
  for (const ParamTensor* t : by_offset) {
    if (t->offset < end || t->numel() <= 0)
      throw TrainError("TrainState: tensor '" + t->name + "' at element " +
                       std::to_string(t->offset) + " overlaps the previous one (ends at " +
                       std::to_string(end) + ") or is empty");
    const bool decay = t->shape.size() >= 2;
    if (!runs_.empty() && runs_.back().decay == decay)
      runs_.back().numel = t->offset + t->numel() - runs_.back().offset;
    else
      runs_.push_back({runs_.empty() ? 0 : end, t->offset + t->numel() - end, decay});
    end = t->offset + t->numel();
  }
  if (total_numel != 0 && total_numel < end)
    throw TrainError("TrainState: total_numel " + std::to_string(total_numel) +
                     " is smaller than the end of the last tensor (" + std::to_string(end) + ")");
  total_ = total_numel ? total_numel : end;
  compute_dtype_ = ops.act_dtype();
  const uint64_t bytes = uint64_t(total_) * 4;
  params_ = pool_.allocate(bytes, kTagParams, "train.params");
  grads_ = pool_.allocate(bytes, kTagGrads, "train.grads");
  m_ = pool_.allocate(bytes, kTagOptimizer, "train.adam_m");
  v_ = pool_.allocate(bytes, kTagOptimizer, "train.adam_v");
  scratch_ = pool_.allocate(64, kTagGrads, "train.norm_scratch");
  if (compute_dtype_ != DType::F32)
    compute_ = pool_.allocate(uint64_t(total_) * dtype_size(compute_dtype_), kTagCompute,
                              "train.compute_params");
  ops_.fill_zero(params_.ptr, bytes);
  ops_.fill_zero(grads_.ptr, bytes);
  ops_.fill_zero(m_.ptr, bytes);
  ops_.fill_zero(v_.ptr, bytes);
  refresh_compute_copy();
  ops_.synchronize();
}

TrainState::~TrainState() {
  try {
    if (offloaded_) restore();
    for (auto* a : {&params_, &grads_, &m_, &v_, &scratch_, &compute_})
      if (a->ptr) pool_.free(*a);
  } catch (...) {
    // Destructors must not throw; the pool reclaims its memory when it is destroyed.
  }
}

const ParamTensor& TrainState::tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return t;
  throw TrainError("TrainState: no parameter named '" + name + "' (" +
                   std::to_string(tensors_.size()) + " tensors, first '" + tensors_[0].name + "')");
}

void TrainState::load_params(const float* host, int64_t n) {
  if (n != total_)
    throw TrainError("TrainState::load_params: got " + std::to_string(n) + " values, the state "
                     "holds " + std::to_string(total_));
  ops_.copy_to_device(params_.ptr, host, size_t(n) * 4);
  ops_.fill_zero(m_.ptr, size_t(n) * 4);
  ops_.fill_zero(v_.ptr, size_t(n) * 4);
  refresh_compute_copy();
  ops_.synchronize();
}

void TrainState::params_to_host(float* host, int64_t n) const {
  if (n != total_)
    throw TrainError("TrainState::params_to_host: destination holds " + std::to_string(n) +
                     " values, the state " + std::to_string(total_));
  ops_.copy_to_host(host, params_.ptr, size_t(n) * 4);
}

void TrainState::reset_moments() {
  ops_.fill_zero(m_.ptr, size_t(total_) * 4);
  ops_.fill_zero(v_.ptr, size_t(total_) * 4);
}

void TrainState::zero_grads() { ops_.fill_zero(grads_.ptr, size_t(total_) * 4); }

double TrainState::grad_norm() {
  float* s = static_cast<float*>(scratch_.ptr);
  ops_.fill_zero(s, 4);
  ops_.sum_squares(s, grads(), total_);
  float host = 0;
  ops_.copy_to_host(&host, s, 4);
  ops_.synchronize();
  return std::sqrt(double(host));
}

void TrainState::scale_grads(float s) { ops_.scale(grads(), total_, s); }

void TrainState::adamw_update(double lr, int64_t step, const AdamWOptions& o) {
  if (offloaded_) throw TrainError("TrainState::adamw_update: the state is offloaded (restore it)");
  for (const Run& r : runs_) {
    kernels::Ops::AdamW h{float(lr), o.beta1, o.beta2, o.eps, r.decay ? o.weight_decay : 0.f,
                          step};
    ops_.adamw_step(params() + r.offset, grads() + r.offset, adam_m() + r.offset,
                    adam_v() + r.offset, r.numel, h);
  }
  refresh_compute_copy();
}

void TrainState::refresh_compute_copy() {
  if (compute_dtype_ != DType::F32)
    ops_.convert(compute_.ptr, compute_dtype_, params_.ptr, DType::F32, total_);
}

void TrainState::offload(bool keep_weights) {
  if (!offloaded_) {
    ops_.synchronize();
    pool_.sleep({kTagOptimizer}, allocator::SleepMode::Offload);
    pool_.sleep({kTagGrads}, allocator::SleepMode::Discard);
    offloaded_ = true;
  }
  if (!keep_weights && weights_resident_) {
    ops_.synchronize();
    pool_.sleep({kTagParams}, allocator::SleepMode::Offload);
    if (compute_.ptr) pool_.sleep({kTagCompute}, allocator::SleepMode::Discard);
    weights_resident_ = false;
  }
}

void TrainState::restore() {
  if (!offloaded_) return;
  std::vector<allocator::Tag> tags = {kTagOptimizer, kTagGrads};
  const bool weights_back = !weights_resident_;
  if (weights_back) {
    tags.push_back(kTagParams);
    if (compute_.ptr) tags.push_back(kTagCompute);
  }
  pool_.wake(tags);
  offloaded_ = false;
  weights_resident_ = true;
  if (weights_back) refresh_compute_copy();
  ops_.synchronize();
}

uint64_t TrainState::layout_hash() const {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& t : tensors_) {
    h = fnv_mix(h, t.name.data(), t.name.size());
    for (int64_t d : t.shape) h = fnv_mix(h, &d, sizeof d);
    h = fnv_mix(h, &t.offset, sizeof t.offset);
  }
  return fnv_mix(h, &total_, sizeof total_);
}

std::vector<SectionSource> TrainState::checkpoint_sections() const {
  if (offloaded_) throw TrainError("TrainState: cannot checkpoint while offloaded (restore first)");
  std::vector<SectionSource> s;
  for (auto [name, ptr] : {std::pair{"params", params_.ptr}, std::pair{"adam_m", m_.ptr},
                           std::pair{"adam_v", v_.ptr}}) {
    s.push_back({name, uint64_t(total_) * 4, [this, p = ptr](uint64_t off, void* dst, size_t n) {
                   ops_.copy_to_host(dst, static_cast<char*>(p) + off, n);
                 }});
  }
  return s;
}

void TrainState::read_sections(const CheckpointReader& r) {
  if (offloaded_) throw TrainError("TrainState: cannot load a checkpoint while offloaded");
  for (auto [name, ptr] : {std::pair{"params", params_.ptr}, std::pair{"adam_m", m_.ptr},
                           std::pair{"adam_v", v_.ptr}}) {
    if (r.section_bytes(name) != uint64_t(total_) * 4)
      throw TrainError(std::string("checkpoint section '") + name + "' holds " +
                       std::to_string(r.section_bytes(name)) + " bytes; this trainer needs " +
                       std::to_string(uint64_t(total_) * 4));
    r.read_section(name, [this, p = ptr](uint64_t off, const void* src, size_t n) {
      ops_.copy_to_device(static_cast<char*>(p) + off, src, n);
    });
  }
  refresh_compute_copy();
  ops_.synchronize();
}

BucketPlan TrainState::plan_buckets(DType dtype, uint64_t bucket_bytes) const {
  const uint64_t elem = dtype_size(dtype);
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    throw TrainError("plan_buckets: dtype " + std::string(dtype_name(dtype)) +
                     " is not a floating type (allowed: F32, BF16, F16)");
  if (bucket_bytes < kBucketAlign || bucket_bytes % kBucketAlign != 0)
    throw TrainError("plan_buckets: bucket_bytes " + std::to_string(bucket_bytes) +
                     " must be a positive multiple of " + std::to_string(kBucketAlign));
  BucketPlan plan{dtype, bucket_bytes, {{}}};
  for (const auto& t : tensors_) {
    const uint64_t tensor_bytes = uint64_t(t.numel()) * elem;
    for (uint64_t done = 0; done < tensor_bytes;) {
      WeightBucket* b = &plan.buckets.back();
      uint64_t start = (b->used_bytes + kBucketAlign - 1) / kBucketAlign * kBucketAlign;
      if (start >= bucket_bytes) {
        plan.buckets.emplace_back();
        b = &plan.buckets.back();
        start = 0;
      }
      const uint64_t n = std::min(tensor_bytes - done, bucket_bytes - start);
      b->entries.push_back({t.name, t.shape, dtype, done, start, n});
      b->used_bytes = start + n;
      done += n;
    }
  }
  return plan;
}

void TrainState::pack_bucket(const BucketPlan& plan, size_t index, void* dst) const {
  if (!weights_resident_) throw TrainError("TrainState::pack_bucket: the weights are offloaded");
  if (index >= plan.buckets.size())
    throw TrainError("pack_bucket: bucket " + std::to_string(index) + " of a plan with " +
                     std::to_string(plan.buckets.size()));
  const uint64_t elem = dtype_size(plan.dtype);
  for (const auto& e : plan.buckets[index].entries) {
    const ParamTensor& t = tensor(e.name);
    const int64_t first = t.offset + int64_t(e.tensor_byte_offset / elem);
    const int64_t n = int64_t(e.bytes / elem);
    char* out = static_cast<char*>(dst) + e.bucket_byte_offset;
    if (plan.dtype == DType::F32)
      ops_.copy_on_device(out, params() + first, e.bytes);
    else if (plan.dtype == compute_dtype_)   // the exact weights the forward used
      ops_.copy_on_device(out, static_cast<const char*>(compute()) + first * int64_t(elem), e.bytes);
    else
      ops_.convert(out, plan.dtype, params() + first, DType::F32, n);
  }
}

std::vector<NamedTensor> TrainState::export_weights(DType dtype) const {
  constexpr uint64_t kStagingBytes = uint64_t(64) << 20;
  const BucketPlan plan = plan_buckets(dtype, kStagingBytes);
  std::vector<NamedTensor> out;
  for (const auto& t : tensors_)
    out.push_back({t.name, dtype, t.shape, std::vector<std::byte>(size_t(t.numel()) * dtype_size(dtype))});
  auto staging = pool_.allocate(kStagingBytes, kTagCompute, "train.export_staging");
  std::vector<std::byte> host(kStagingBytes);
  try {
    size_t next = 0;   // tensors come in plan order
    for (size_t b = 0; b < plan.buckets.size(); ++b) {
      pack_bucket(plan, b, staging.ptr);
      ops_.copy_to_host(host.data(), staging.ptr, plan.buckets[b].used_bytes);
      ops_.synchronize();
      for (const auto& e : plan.buckets[b].entries) {
        while (out[next].name != e.name) ++next;
        std::memcpy(out[next].data.data() + e.tensor_byte_offset, host.data() + e.bucket_byte_offset,
                    e.bytes);
      }
    }
  } catch (...) {
    pool_.free(staging);
    throw;
  }
  pool_.free(staging);
  return out;
}

}  // namespace siesta::train
