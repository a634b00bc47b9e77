// The fp32 CPU backend of the op table (kernels/include/siesta/kernels/ops.hpp): the reference
// that tests compare the CUDA backend with, and the backend of CPU-only runs. Each op family's
// members are defined in its own file (gemm.cpp, rmsnorm.cpp, attention.cpp, ...).
#pragma once

#include <vector>

#include "siesta/kernels/error.hpp"
#include "siesta/kernels/ops.hpp"

namespace siesta::kernels::cpu {

class CpuOps final : public Ops {
 public:
  Backend backend() const override { return Backend::Cpu; }
  Device device() const override { return Device::cpu(); }
  DType act_dtype() const override { return DType::F32; }
  void synchronize() override {}

  void copy_to_device(void* dst, const void* host_src, size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override;
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
  // No whole-step kernel here: the model runs the layers op by op.
  bool decode_layers(const DecodeStep&, const PagedBatch&, const AttnShape&) override {
    return false;
  }

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

 private:
  // Per-backend scratch (attention score matrices, gathered KV); grows, never shrinks. The
  // CPU backend is used from one thread at a time, like a CUDA stream.
  std::vector<float> scratch_a_, scratch_b_, scratch_c_;
  std::vector<float> fused_xn_, fused_k_, fused_v_, fused_up_;  // fused decode intermediates
  // Draws made by sample_enqueue (at once: this backend has no queue), until collected.
  struct SampleSlot {
    std::vector<int32_t> tokens;
    std::vector<float> logprobs;
    bool pending = false;   // enqueued, not collected
  };
  SampleSlot sample_slots_[kSampleSlots];
  SampleSlot& sample_slot(int slot, const char* op);
};

// Draws one token from fp32 logits[vocab] as SamplingRow describes; host-only, so a backend
// whose logits live elsewhere can copy one row to the host and reuse the exact same draw.
// The uniform number comes from a counter-based generator keyed by (seed, step), so the same
// request reproduces the same tokens whatever else is batched with it.
void sample_row(const float* logits, int64_t vocab, const SamplingRow& row, int32_t* token,
                float* logprob);

// The uniform in [0, 1) used for (seed, step): splitmix64 of the pair, 53 bits.
double uniform_for(uint64_t seed, uint64_t step);

}  // namespace siesta::kernels::cpu
