// The trainer's state on one device: fp32 master parameters, fp32 gradients and fp32 AdamW
// moments, each one contiguous buffer in an allocator pool (tags train_params, train_grads,
// optimizer), plus, where the backend computes in bf16, a compute copy of the parameters
// (tag train_compute) refreshed after every update. The model binds its weights to
// compute() and accumulates its gradients into grads(), both laid out as tensors() says.
//
// offload() / restore() put the state to sleep between training phases: parameters and
// moments go to the pool's host backup (Offload) and come back bit-exact at the same
// addresses; gradients and the compute copy are dropped (Discard) because a step starts by
// zeroing the former and restore() rebuilds the latter from the master copy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "siesta/allocator/pool.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/kernels/tensor.hpp"
#include "siesta/train/checkpoint_file.hpp"

namespace siesta::train {

inline const char* const kTagParams = "train_params";
inline const char* const kTagGrads = "train_grads";
inline const char* const kTagOptimizer = "optimizer";
inline const char* const kTagCompute = "train_compute";

// One parameter tensor inside the contiguous buffers.
struct ParamTensor {
  std::string name;      // HF name, e.g. "model.layers.0.self_attn.q_proj.weight"
  Shape shape;
  int64_t offset = 0;    // in elements from the start of the buffer
  int64_t numel() const { return siesta::numel(shape); }
};

struct AdamWOptions {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;   // applied to matrices only (norm weights and biases are exempt)
};

// A fixed-size bucket of exported weights: entries are byte ranges of named tensors (a
// tensor larger than a bucket is split across consecutive buckets).
struct BucketEntry {
  std::string name;
  Shape shape;
  DType dtype = DType::BF16;
  uint64_t tensor_byte_offset = 0;   // where this piece starts inside the tensor
  uint64_t bucket_byte_offset = 0;   // where it lies inside the bucket
  uint64_t bytes = 0;
};
struct WeightBucket {
  std::vector<BucketEntry> entries;
  uint64_t used_bytes = 0;           // <= the plan's bucket_bytes
};
struct BucketPlan {
  DType dtype = DType::BF16;
  uint64_t bucket_bytes = 0;
  std::vector<WeightBucket> buckets;
};

// Host copy of one exported tensor.
struct NamedTensor {
  std::string name;
  DType dtype = DType::BF16;
  Shape shape;
  std::vector<std::byte> data;
  TensorView view() { return {data.data(), dtype, shape, Device::cpu()}; }
};

class TrainState {
 public:
  // Allocates the buffers in pool (whose device must be ops.device()). tensors must not
  // overlap; the buffers hold total_numel elements (0: up to the end of the last tensor), so
  // a padded model layout (model::weights_numel) fits; padding stays zero. Parameters start
  // at zero: fill them with load_params().
  TrainState(kernels::Ops& ops, allocator::Pool& pool, std::vector<ParamTensor> tensors,
             int64_t total_numel = 0);
  ~TrainState();
  TrainState(const TrainState&) = delete;
  TrainState& operator=(const TrainState&) = delete;

  const std::vector<ParamTensor>& tensors() const { return tensors_; }
  const ParamTensor& tensor(const std::string& name) const;  // throws TrainError when unknown
  int64_t numel() const { return total_; }
  DType compute_dtype() const { return compute_dtype_; }

  float* params() const { return static_cast<float*>(params_.ptr); }
  float* grads() const { return static_cast<float*>(grads_.ptr); }
  float* adam_m() const { return static_cast<float*>(m_.ptr); }
  float* adam_v() const { return static_cast<float*>(v_.ptr); }
  // Parameters in the backend's activation dtype (== params() on the fp32 CPU backend).
  void* compute() const { return compute_dtype_ == DType::F32 ? params_.ptr : compute_.ptr; }

  // Copies host fp32 parameters in (all of them, in buffer order), zeroes the moments.
  void load_params(const float* host, int64_t n);
  void params_to_host(float* host, int64_t n) const;
  // Zeroes the AdamW moments (a fresh optimizer over the current parameters).
  void reset_moments();
  void zero_grads();
  // sqrt(sum of squared gradients), in fp32 on the device, reduced to the host.
  double grad_norm();
  void scale_grads(float s);
  // One AdamW update of every parameter (step is 1-based), then refreshes the compute copy.
  void adamw_update(double lr, int64_t step, const AdamWOptions& o);
  void refresh_compute_copy();

  // Moves the AdamW moments to the host backup and drops the gradients. With keep_weights the
  // master weights (and the compute copy) stay on the device, for a weight sync that follows;
  // a later offload(false) then moves them too.
  void offload(bool keep_weights = false);
  void restore();
  bool offloaded() const { return offloaded_; }
  bool weights_resident() const { return weights_resident_; }

  // A hash of the tensor names and shapes: what a checkpoint must match to be loaded.
  uint64_t layout_hash() const;
  // Sections "params", "adam_m", "adam_v" (fp32) for write_checkpoint; read_sections loads
  // them (after the caller verified the file) and refreshes the compute copy.
  std::vector<SectionSource> checkpoint_sections() const;
  void read_sections(const CheckpointReader& r);

  // Every tensor converted to dtype, as host copies.
  std::vector<NamedTensor> export_weights(DType dtype) const;
  // Buckets of at most bucket_bytes each, packed in tensor order.
  BucketPlan plan_buckets(DType dtype, uint64_t bucket_bytes) const;
  // Writes bucket `index` of plan into dst, a buffer of plan.bucket_bytes on this backend's
  // device (the weight syncer's send buffer).
  void pack_bucket(const BucketPlan& plan, size_t index, void* dst) const;

 private:
  kernels::Ops& ops_;
  allocator::Pool& pool_;
  std::vector<ParamTensor> tensors_;
  int64_t total_ = 0;
  DType compute_dtype_ = DType::F32;
  allocator::Allocation params_, grads_, m_, v_, compute_, scratch_;
  bool offloaded_ = false;
  bool weights_resident_ = true;   // master weights (and compute copy) mapped
  struct Run {
    int64_t offset, numel;
    bool decay;
  };
  std::vector<Run> runs_;   // adjacent tensors merged by weight-decay class
};

}  // namespace siesta::train
