// The CUDA backend of the op table (bf16 storage, fp32 accumulation). One class; its member
// functions are defined next to their kernels, one .cu per op family (llm.c style):
//   cuda_ops.cu (lifetime, copies, convert), gemm.cu, elementwise.cu (bias, residual add),
//   embedding.cu, rmsnorm.cu, rope.cu, swiglu.cu, attention.cu (training), paged_attention.cu,
//   logprobs.cu, sample.cu, optimizer.cu, decode_gemv.cu (small-batch GEMV and the fused
//   decode ops).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>
#include <memory>

#include "siesta/kernels/error.hpp"
#include "siesta/kernels/ops.hpp"

// After every kernel launch: a bad configuration surfaces here, not at the next sync.
#define SIESTA_CUDA_LAUNCH_CHECK() SIESTA_CUDA_CHECK(cudaGetLastError())

namespace siesta::kernels::cuda {

// Device memory owned by the backend itself (cuBLAS workspace, attention scratch, sampling
// results). Grows on demand, never shrinks until the Ops object dies.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch();
  // Returns at least `bytes` bytes; the stream is synchronised before an old buffer is freed,
  // because work already enqueued may still read it.
  void* get(size_t bytes, cudaStream_t stream);
  size_t capacity() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Pinned host memory owned by the backend (sampling parameters in, results out): copies from
// and to it are plain DMA. Grows on demand; callers synchronise before it is reused.
class HostScratch {
 public:
  HostScratch() = default;
  HostScratch(const HostScratch&) = delete;
  HostScratch& operator=(const HostScratch&) = delete;
  ~HostScratch();
  void* get(size_t bytes);
  // The same memory as the device sees it (mapped: kernels write results straight into it).
  void* device_ptr() const { return dev_; }

 private:
  void* dev_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class CudaOps final : public Ops {
 public:
  explicit CudaOps(int device);
  ~CudaOps() override;

  Backend backend() const override { return Backend::Cuda; }
  Device device() const override { return Device::cuda(device_); }
  DType act_dtype() const override { return DType::BF16; }
  void synchronize() override;
  void* native_stream() const override { return stream_; }

  void copy_to_device(void* dst, const void* host_src, size_t bytes) override;
  void copy_to_device_queued(void* dst, const void* host_src, size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  std::shared_ptr<void> host_buffer(size_t bytes) override;
  void copy_host_buffer_to_device_queued(void* dst, const void* host_buffer_src,
                                         size_t bytes) override;
  void copy_on_device(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* dst, size_t bytes) override;
  void convert(void* dst, DType dst_t, const void* src, DType src_t, int64_t n) override;

  void gemm(const GemmArgs& g) override;
  void add_bias(void* x, const void* bias, int64_t n, int64_t d) override;
  void bias_backward(float* dbias_f32, const void* dy, int64_t n, int64_t d) override;
  void add_inplace(void* x, const void* y, int64_t n) override;

  void embedding_forward(void* out, const void* table, const int32_t* tokens, int64_t n,
                         int64_t d) override;
  void embedding_backward(float* dtable_f32, const void* dout, const int32_t* tokens, int64_t n,
                          int64_t d) override;

  void rmsnorm_forward(void* out, float* rstd_f32, const void* x, const void* w, int64_t n,
                       int64_t d, float eps) override;
  void rmsnorm_backward(void* dx, float* dw_f32, const void* dout, const void* x, const void* w,
                        const float* rstd_f32, int64_t n, int64_t d) override;

  void rope(void* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim,
            const float* cos_sin_f32, bool inverse) override;

  void swiglu_forward(void* h, const void* gate, const void* up, int64_t n) override;
  void swiglu_backward(void* dgate, void* dup, const void* dh, const void* gate, const void* up,
                       int64_t n) override;

  void attention_forward(void* out, float* lse_f32, const void* q, const void* k, const void* v,
                         int batch, int seq, const AttnShape& s) override;
  void attention_backward(void* dq, void* dk, void* dv, const void* dout, const void* q,
                          const void* k, const void* v, const void* out, const float* lse_f32,
                          int batch, int seq, const AttnShape& s) override;

  void kv_cache_write(const PagedKv& cache, const void* k, const void* v, const PagedBatch& b,
                      const AttnShape& s) override;
  void qkv_bias_rope_cache(void* q_out, const void* qkv, const void* q_bias,
                           const void* k_bias, const void* v_bias, const float* cos_sin_f32,
                           const PagedKv& cache, const PagedBatch& b, const AttnShape& s) override;
  void paged_attention(void* out, const void* q, const PagedKv& cache, const PagedBatch& b,
                       const AttnShape& s) override;

  int fused_decode_max_tokens(int64_t hidden) const override;
  void norm_qkv_rope_cache(void* q_out, const void* x, const void* norm_w, float eps, int64_t d,
                           const QkvWeights& w, const float* cos_sin_f32, const PagedKv& cache,
                           const PagedBatch& b, const AttnShape& s) override;
  void norm_gate_up(void* h, const void* x, const void* norm_w, float eps, const void* gate_w,
                    const void* up_w, int64_t n, int64_t d, int64_t inter) override;
  bool decode_layers(const DecodeStep& step, const PagedBatch& b, const AttnShape& s) override;

  void token_logprobs(float* logprob_f32, float* entropy_f32, const void* logits,
                      const int32_t* targets, int64_t n, int64_t vocab) override;
  void token_logprobs_backward(void* dlogits, const void* logits, const int32_t* targets,
                               const float* dlogprob_f32, int64_t n, int64_t vocab) override;

  void sample_enqueue(int slot, const void* logits, int64_t n, int64_t vocab,
                      const SamplingRow* rows_host) override;
  void sample_collect(int slot, int32_t* tokens_host, float* logprob_f32_host) override;
  void copy_sampled_tokens(int slot, int32_t* dst, int64_t n) override;

  void sum_squares(float* out_f32, const float* x_f32, int64_t n) override;
  void scale(float* x_f32, int64_t n, float s) override;
  void adamw_step(float* param_f32, const float* grad_f32, float* m_f32, float* v_f32, int64_t n,
                  const AdamW& h) override;

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  int multiprocessors() const { return sm_count_; }

 private:
  // Makes this backend's GPU current for the calling thread (cheap when it already is).
  void activate() const;
  // gemm through the decode GEMV kernel when the shape suits it (a few rows of A, B^T
  // weights, bf16 C, beta 0 or 1); false leaves the call to cuBLAS.
  bool gemv(const GemmArgs& g);

  int device_ = 0;
  int sm_count_ = 0;
  size_t max_smem_optin_ = 0;
  bool hopper_ = false;  // compute capability >= 9.0: the decode kernels' bulk copies and PDL
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  unsigned* step_sync_ = nullptr;  // decode_layers: how far each block got, per layer and op
  Scratch attn_scratch_;     // attention score matrices, pointer arrays, dK/dV fp32 sums
  // Sampling, per result slot (Ops::sample_enqueue): device scratch (partial results per
  // block, rows, results), blocks done per row (zero between calls), pinned rows and results,
  // the event recorded once the results reached the host, and what collect needs for rows
  // drawn on the host.
  struct SampleSlot {
    Scratch scratch, counters;
    HostScratch host;
    cudaEvent_t done = nullptr;
    const void* logits = nullptr;
    int64_t n = 0, vocab = 0;
    bool pending = false;   // enqueued, not collected
    std::vector<SamplingRow> rows;
    void* d_results = nullptr;
    void* h_results = nullptr;
  };
  SampleSlot sample_slots_[kSampleSlots];
  SampleSlot& sample_slot(int slot, const char* op);
};

constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
constexpr size_t kStepSyncCounters = 1024;

}  // namespace siesta::kernels::cuda
