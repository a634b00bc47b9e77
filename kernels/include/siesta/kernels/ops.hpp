// The table of operations a transformer needs, with one CPU reference (fp32, OpenBLAS) and one
// CUDA implementation (bf16 storage, fp32 accumulation, cuBLAS) behind the same declaration.
//
// Conventions, for every op:
// - Matrices are row-major. A linear layer's weight is stored as HF does, [out, in], so
//   y[n, out] = x[n, in] · W^T.
// - "act" pointers hold the backend's activation dtype (act_dtype(): F32 on CPU, BF16 on CUDA).
//   Weights of the inference/compute copy are in act dtype as well.
// - Pointers named *_f32 always hold fp32 (norm statistics, log-probs, gradients of parameters,
//   AdamW state), whatever the backend.
// - Ops never allocate device memory visible to the caller; callers pass buffers from allocator
//   pools. All work is enqueued on the backend's stream; synchronize() waits for it.
// - Gradient outputs named "accumulate" add into the destination (+=); others overwrite.
#pragma once

#include <cstdint>
#include <memory>

#include "siesta/kernels/tensor.hpp"

namespace siesta::kernels {

enum class Backend : uint8_t { Cpu, Cuda };

struct GemmArgs {
  bool trans_a = false;   // A is [k, m] in memory when true, else [m, k]
  bool trans_b = false;   // B is [n, k] in memory when true, else [k, n]
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.f;
  const void* a = nullptr; int64_t lda = 0;   // act dtype
  const void* b = nullptr; int64_t ldb = 0;   // act dtype
  float beta = 0.f;
  void* c = nullptr; int64_t ldc = 0;
  DType c_dtype = DType::F32;                 // act dtype, or F32 (fp32 gradient accumulation)
};

// Grouped-query attention shapes. Q rows are [tokens, n_heads * head_dim], K/V rows are
// [tokens, n_kv_heads * head_dim]; head h reads kv head h / (n_heads / n_kv_heads).
struct AttnShape {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.f;      // usually 1/sqrt(head_dim)
};

// Paged KV cache (vLLM layout, one layer): k and v are [num_blocks, block_size, n_kv_heads,
// head_dim] in act dtype. Token i of a sequence lives in block block_table[i / block_size],
// slot i % block_size.
struct PagedKv {
  void* k = nullptr;
  void* v = nullptr;
  int num_blocks = 0;
  int block_size = 0;
};

// A batch for the paged forward: sequence s contributes q_len[s] = q_start[s+1] - q_start[s]
// new tokens (a whole prompt when prefilling, 1 when decoding) whose positions are
// context_len[s] - q_len[s] .. context_len[s] - 1. All int32 arrays live on the backend's device.
struct PagedBatch {
  int num_seqs = 0;
  int num_tokens = 0;              // == q_start[num_seqs]
  const int32_t* q_start = nullptr;       // [num_seqs + 1]
  const int32_t* context_len = nullptr;   // [num_seqs], including the new tokens
  const int32_t* block_table = nullptr;   // [num_seqs, max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  const int32_t* slot_mapping = nullptr;  // [num_tokens]: block * block_size + slot to write
  const int32_t* positions = nullptr;     // [num_tokens]
  int max_q_len = 0;                      // host-side bounds, for launch configuration
  int max_context_len = 0;
};

// Per-row sampling controls. temperature 0 means greedy (argmax); top_k 0 and top_p 1 disable.
struct SamplingRow {
  float temperature = 0.f;
  int32_t top_k = 0;
  float top_p = 1.f;
  uint64_t seed = 0;       // with step, makes the draw reproducible per request
  uint64_t step = 0;
  // top_k or top_p narrows the draw (only with a temperature): the CUDA backend draws such a
  // row on the host, and the engine cannot feed its token to the next step on the device.
  bool truncates(int64_t vocab) const {
    return temperature > 0.f && ((top_k > 0 && top_k < vocab) || top_p < 1.f);
  }
};

class Ops {
 public:
  virtual ~Ops() = default;
  virtual Backend backend() const = 0;
  virtual Device device() const = 0;
  virtual DType act_dtype() const = 0;
  virtual void synchronize() = 0;
  // The backend's stream as an opaque handle (cudaStream_t on CUDA, nullptr on CPU), for
  // callers that capture a sequence of ops into a CUDA graph (the inference engine's decode).
  virtual void* native_stream() const { return nullptr; }

  // ---- memory movement -------------------------------------------------------------------
  // Copies between host memory and this backend's memory (a plain memcpy on CPU).
  virtual void copy_to_device(void* dst, const void* host_src, size_t bytes) = 0;
  // The same, queued behind this backend's earlier work without waiting for it: host_src must
  // stay unchanged until the next synchronize() or blocking copy. For a decode step's metadata,
  // uploaded once per step, where the wait was on every step's critical path.
  virtual void copy_to_device_queued(void* dst, const void* host_src, size_t bytes) {
    copy_to_device(dst, host_src, bytes);
  }
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  // Host memory that this backend's copies reach directly (page-locked on CUDA: a plain DMA, no
  // staging through a driver buffer); ordinary memory on CPU. Freed when the last owner drops it.
  virtual std::shared_ptr<void> host_buffer(size_t bytes) {
    return std::shared_ptr<void>(::operator new(bytes), [](void* p) { ::operator delete(p); });
  }
  // copy_to_device_queued from a host_buffer(): on CUDA a kernel reads the page-locked bytes
  // over the bus, so a decode step's metadata needs no copy-engine operation in the stream
  // between two steps. bytes a multiple of 4.
  virtual void copy_host_buffer_to_device_queued(void* dst, const void* host_buffer_src,
                                                 size_t bytes) {
    copy_to_device_queued(dst, host_buffer_src, bytes);
  }
  virtual void copy_on_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  // n elements, dtypes among F32/BF16/F16, both buffers on this backend.
  virtual void convert(void* dst, DType dst_t, const void* src, DType src_t, int64_t n) = 0;

  // ---- linear algebra -------------------------------------------------------------------
  virtual void gemm(const GemmArgs& g) = 0;
  // x[n, d] += bias[d]
  virtual void add_bias(void* x, const void* bias, int64_t n, int64_t d) = 0;
  // dbias_f32[d] += sum_rows dy[n, d]   (accumulate)
  virtual void bias_backward(float* dbias_f32, const void* dy, int64_t n, int64_t d) = 0;
  // x[i] += y[i]  (act dtype)
  virtual void add_inplace(void* x, const void* y, int64_t n) = 0;

  // ---- embedding ------------------------------------------------------------------------
  // out[i, :] = table[tokens[i], :]
  virtual void embedding_forward(void* out, const void* table, const int32_t* tokens, int64_t n,
                                 int64_t d) = 0;
  // dtable_f32[tokens[i], :] += dout[i, :]   (accumulate)
  virtual void embedding_backward(float* dtable_f32, const void* dout, const int32_t* tokens,
                                  int64_t n, int64_t d) = 0;

  // ---- RMSNorm --------------------------------------------------------------------------
  // out = x / rms(x) * w; rstd_f32[i] = 1 / sqrt(mean(x_i^2) + eps) (kept for backward; may be
  // null at inference).
  virtual void rmsnorm_forward(void* out, float* rstd_f32, const void* x, const void* w,
                               int64_t n, int64_t d, float eps) = 0;
  // dx += d(out)/dx · dout (accumulate: dx is the residual stream's gradient);
  // dw_f32 += d(out)/dw · dout (accumulate).
  virtual void rmsnorm_backward(void* dx, float* dw_f32, const void* dout, const void* x,
                                const void* w, const float* rstd_f32, int64_t n, int64_t d) = 0;

  // ---- rotary embeddings ----------------------------------------------------------------
  // Rotates, in place, x[n_tokens, n_heads, head_dim] by the angle of positions[i] using the
  // half-split (NeoX/HF Llama) pairing (j, j + head_dim/2). cos_sin_f32 is [max_pos, head_dim]:
  // the first head_dim/2 floats of a row are cos, the rest sin. inverse rotates by -angle
  // (the backward pass).
  virtual void rope(void* x, const int32_t* positions, int64_t n_tokens, int n_heads,
                    int head_dim, const float* cos_sin_f32, bool inverse) = 0;

  // ---- SwiGLU ---------------------------------------------------------------------------
  // h = silu(gate) * up, all [n]
  virtual void swiglu_forward(void* h, const void* gate, const void* up, int64_t n) = 0;
  // dgate, dup overwrite.
  virtual void swiglu_backward(void* dgate, void* dup, const void* dh, const void* gate,
                               const void* up, int64_t n) = 0;

  // ---- attention (training: contiguous, causal) -----------------------------------------
  // q [batch, seq, n_heads*hd], k/v [batch, seq, n_kv_heads*hd], out like q;
  // lse_f32 [batch, n_heads, seq] is the log-sum-exp of each softmax row (kept for backward).
  virtual void attention_forward(void* out, float* lse_f32, const void* q, const void* k,
                                 const void* v, int batch, int seq, const AttnShape& s) = 0;
  // dq, dk, dv overwrite.
  virtual void attention_backward(void* dq, void* dk, void* dv, const void* dout,
                                  const void* q, const void* k, const void* v, const void* out,
                                  const float* lse_f32, int batch, int seq,
                                  const AttnShape& s) = 0;

  // ---- attention (inference: paged KV cache) --------------------------------------------
  // Writes k/v [num_tokens, n_kv_heads*hd] into the cache at b.slot_mapping.
  virtual void kv_cache_write(const PagedKv& cache, const void* k, const void* v,
                              const PagedBatch& b, const AttnShape& s) = 0;
  // The tail of the q/k/v projections in one pass, for batches the fused decode ops do not
  // take (prefill, large decode batches): the biases added (each may be null), rope at
  // b.positions on q and k, k and v stored in `cache` at b.slot_mapping (slot < 0: not stored),
  // q written to q_out [num_tokens, n_heads*hd]. qkv holds a row per token: q | k | v
  // (n_heads*hd + 2*n_kv_heads*hd values, as one GEMM over the three weights writes them); it
  // is only read. The same values as add_bias, rope and kv_cache_write one after the other
  // (rounded to act dtype where they store), in one kernel instead of up to six (H200, 0.5b
  // decode at batch 64: 1.72 -> 1.55 ms per step).
  virtual void qkv_bias_rope_cache(void* q_out, const void* qkv, const void* q_bias,
                                   const void* k_bias, const void* v_bias,
                                   const float* cos_sin_f32, const PagedKv& cache,
                                   const PagedBatch& b, const AttnShape& s) = 0;
  // out [num_tokens, n_heads*hd]: each new token attends to its sequence's cached tokens at
  // positions <= its own.
  virtual void paged_attention(void* out, const void* q, const PagedKv& cache,
                               const PagedBatch& b, const AttnShape& s) = 0;

  // ---- fused decode (a few tokens per step) --------------------------------------------
  // A decode step moves every weight once for a handful of tokens, so its time is kernel count
  // and weight bandwidth. These two ops do the work of several ops above in one pass over the
  // weights, with the same rounding points (act dtype after each op they replace); results
  // match the op-by-op sequence up to accumulation order.
  //
  // How many tokens one call may carry for a model of this hidden size; 0 when the fused
  // ops cannot take that size (callers then use the op-by-op sequence).
  virtual int fused_decode_max_tokens(int64_t hidden) const = 0;
  // The attention input projections of one layer, HF [out, in] in act dtype; biases may be null.
  struct QkvWeights {
    const void* q = nullptr;
    const void* k = nullptr;
    const void* v = nullptr;
    const void* q_bias = nullptr;
    const void* k_bias = nullptr;
    const void* v_bias = nullptr;
  };
  // For b.num_tokens tokens (<= fused_decode_max_tokens(d)):
  //   xn = rmsnorm(x, norm_w, eps); q = xn Wq^T + bq; k = xn Wk^T + bk; v = xn Wv^T + bv;
  //   rope(q), rope(k) at b.positions; k and v stored in `cache` at b.slot_mapping (slot < 0:
  //   not stored); q_out = q.   x [n, d], q_out [n, n_heads * head_dim].
  virtual void norm_qkv_rope_cache(void* q_out, const void* x, const void* norm_w, float eps,
                                   int64_t d, const QkvWeights& w, const float* cos_sin_f32,
                                   const PagedKv& cache, const PagedBatch& b,
                                   const AttnShape& s) = 0;
  // h[n, inter] = silu(xn Wg^T) * (xn Wu^T), xn = rmsnorm(x, norm_w, eps); x [n, d],
  // Wg / Wu [inter, d]; n <= fused_decode_max_tokens(d).
  virtual void norm_gate_up(void* h, const void* x, const void* norm_w, float eps,
                            const void* gate_w, const void* up_w, int64_t n, int64_t d,
                            int64_t inter) = 0;

  // A whole decode step's layers in one call: for each layer l, in order, what
  // norm_qkv_rope_cache (into caches[l]), paged_attention, gemm for o_proj (into x),
  // norm_gate_up and gemm for down_proj (into x) do, with the same rounding points; x [n, d] is
  // the residual stream, in and out. With a few tokens a step's time goes to the boundaries
  // between ~5 kernels per layer more than to bytes; one kernel keeps streaming weights across
  // them. Returns false, having done nothing, where this backend has no such kernel for the
  // call (the CPU; a GPU before Hopper; head_dim other than 64 or 128; more tokens than it
  // stages): callers then run the layers op by op.
  struct DecodeLayerWeights {
    QkvWeights qkv;
    const void* input_norm = nullptr;
    const void* o = nullptr;  // [d, n_heads * head_dim]
    const void* post_norm = nullptr;
    const void* gate = nullptr;  // [inter, d]
    const void* up = nullptr;    // [inter, d]
    const void* down = nullptr;  // [d, inter]
  };
  struct DecodeStep {
    void* x = nullptr;  // [n, d], act dtype
    int64_t d = 0, inter = 0;
    float eps = 0.f;
    int n_layers = 0;
    const DecodeLayerWeights* layers = nullptr;  // host arrays of n_layers
    const PagedKv* caches = nullptr;
    const float* cos_sin_f32 = nullptr;  // as for rope
    // Device workspace: q [n, n_heads * head_dim] and h [n, inter] in act dtype, and
    // decode_step_partials_bytes(n, s) bytes (attention's partial sums over parts of a context).
    void* q = nullptr;
    void* h = nullptr;
    void* partials = nullptr;
  };
  static constexpr int kDecodeStepMaxTokens = 8;  // b.num_tokens above it: false
  static constexpr int kDecodeAttnSplits = 8;
  static size_t decode_step_partials_bytes(int tokens, const AttnShape& s) {
    return size_t(tokens) * size_t(s.n_heads) * kDecodeAttnSplits * size_t(s.head_dim + 4) * 4;
  }
  virtual bool decode_layers(const DecodeStep& step, const PagedBatch& b, const AttnShape& s) = 0;

  // ---- log-probabilities (GRPO/SFT head) ------------------------------------------------
  // For each row i of logits [n, vocab]: logprob_f32[i] = log softmax(logits_i)[targets[i]],
  // entropy_f32[i] = -sum p log p (entropy may be null).
  virtual void token_logprobs(float* logprob_f32, float* entropy_f32, const void* logits,
                              const int32_t* targets, int64_t n, int64_t vocab) = 0;
  // dlogits[i, :] = dlogprob_f32[i] * (onehot(targets[i]) - softmax(logits_i))  (overwrite)
  virtual void token_logprobs_backward(void* dlogits, const void* logits,
                                       const int32_t* targets, const float* dlogprob_f32,
                                       int64_t n, int64_t vocab) = 0;

  // ---- sampling -------------------------------------------------------------------------
  // For each row i of logits [n, vocab] draws a token per rows[i] (host array), writing
  // tokens[i] and the log-prob of that token under the unmodified distribution
  // (temperature 1, no truncation), as vLLM reports it. tokens/logprob_f32 are host pointers.
  // Blocking: sample_enqueue + sample_collect on a slot of its own.
  void sample(int32_t* tokens_host, float* logprob_f32_host, const void* logits, int64_t n,
              int64_t vocab, const SamplingRow* rows_host) {
    sample_enqueue(kBlockingSampleSlot, logits, n, vocab, rows_host);
    sample_collect(kBlockingSampleSlot, tokens_host, logprob_f32_host);
  }
  // The same in two halves, so that a decode step's sampling queues behind its forward and the
  // next step can be launched before the host reads the draw (the engine's one-step lookahead).
  // sample_enqueue queues the draw into result slot `slot` (0 .. kSampleSlots - 1; rows_host is
  // read before it returns); sample_collect waits for that slot only and writes the host
  // arrays; copy_sampled_tokens queues a copy of the slot's n tokens to dst (int32, this
  // backend's memory): the next step's input tokens, without a trip through the host. Rows
  // with top_k / top_p are drawn on the host at collect time: their logits must stay unchanged
  // until then, and copy_sampled_tokens is not allowed for them.
  static constexpr int kSampleSlots = 3;
  static constexpr int kBlockingSampleSlot = kSampleSlots - 1;
  virtual void sample_enqueue(int slot, const void* logits, int64_t n, int64_t vocab,
                              const SamplingRow* rows_host) = 0;
  virtual void sample_collect(int slot, int32_t* tokens_host, float* logprob_f32_host) = 0;
  virtual void copy_sampled_tokens(int slot, int32_t* dst, int64_t n) = 0;

  // ---- optimizer ------------------------------------------------------------------------
  // Sum of squares of x_f32[n], added into *out_f32 (a device pointer on this backend).
  virtual void sum_squares(float* out_f32, const float* x_f32, int64_t n) = 0;
  // x_f32[i] *= s
  virtual void scale(float* x_f32, int64_t n, float s) = 0;
  struct AdamW {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;   // 1-based, for bias correction
  };
  // Decoupled weight decay: p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)
  virtual void adamw_step(float* param_f32, const float* grad_f32, float* m_f32, float* v_f32,
                          int64_t n, const AdamW& h) = 0;
};

// fp32 reference backend (OpenBLAS for matrix products). threads 0 = OpenBLAS default.
std::unique_ptr<Ops> make_cpu_ops();
// bf16 CUDA backend on device `device`, its own stream and cuBLAS handle. Throws KernelError
// when CUDA is not compiled in or the device is unusable.
std::unique_ptr<Ops> make_cuda_ops(int device);
std::unique_ptr<Ops> make_ops(Device device);

// Precomputes the [max_pos, head_dim] cos/sin table on the host (rope_theta and linear /
// llama3 / yarn-free scaling factor), as HF's LlamaRotaryEmbedding does.
std::vector<float> rope_cos_sin_table(int max_pos, int head_dim, double theta,
                                      double linear_scaling = 1.0);

}  // namespace siesta::kernels
