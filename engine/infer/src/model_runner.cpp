// ModelRunner: batch staging, forward, sampling (see the header).
#include "model_runner.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "cuda_graphs.hpp"
#include "siesta/infer/error.hpp"

namespace siesta::infer {
namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

size_t meta_ints(const RunnerLimits& l) {
  return 3 * size_t(l.max_tokens) + 3 * size_t(l.max_num_seqs) + 1 +
         size_t(l.max_num_seqs) * size_t(l.max_blocks_per_seq);
}

}  // namespace

BatchLayout BatchLayout::compact(int n_tokens, int n_seqs, int n_rows, int mb) {
  BatchLayout L;
  int64_t at = 0;
  L.tokens = at;      at += n_tokens;
  L.positions = at;   at += n_tokens;
  L.slots = at;       at += n_tokens;
  L.q_start = at;     at += n_seqs + 1;
  L.context_len = at; at += n_seqs;
  L.rows = at;        at += n_rows;
  L.block_table = at; at += int64_t(n_seqs) * mb;
  L.total = at;
  L.max_blocks_per_seq = mb;
  return L;
}

size_t ModelRunner::workspace_bytes(const model::ModelConfig& cfg, DType act,
                                    const RunnerLimits& l) {
  return align_up(model::InferenceModel::workspace_bytes(cfg, act, l.max_tokens)) +
         align_up(size_t(l.max_num_seqs) * size_t(cfg.vocab_size) * dtype_size(act)) +
         align_up(meta_ints(l) * sizeof(int32_t));
}

ModelRunner::ModelRunner(const model::ModelConfig& cfg, kernels::Ops& ops,
                         const model::ModelWeights& w, const float* rope_dev,
                         std::vector<kernels::PagedKv> kv, void* workspace, size_t ws_bytes,
                         const RunnerLimits& limits)
    : cfg_(cfg), ops_(ops), limits_(limits), kv_(kv) {
  const DType act = ops.act_dtype();
  if (ws_bytes < workspace_bytes(cfg, act, limits))
    throw InferError(ErrorKind::Internal, "model runner workspace too small");
  auto* p = static_cast<std::byte*>(workspace);
  size_t model_ws = align_up(model::InferenceModel::workspace_bytes(cfg, act, limits.max_tokens));
  model_ = std::make_unique<model::InferenceModel>(cfg, ops, w, rope_dev, std::move(kv), p,
                                                   model_ws, limits.max_tokens);
  p += model_ws;
  logits_ = p;
  p += align_up(size_t(limits.max_num_seqs) * size_t(cfg.vocab_size) * dtype_size(act));
  meta_dev_ = reinterpret_cast<int32_t*>(p);
  for (auto& m : meta_host_) {
    m = ops.host_buffer(meta_ints(limits) * sizeof(int32_t));
    std::memset(m.get(), 0, meta_ints(limits) * sizeof(int32_t));
  }
  block_bytes_ = size_t(kv_.empty() ? 0 : kv_[0].block_size) * size_t(cfg.num_key_value_heads) *
                 size_t(cfg.head_dim) * dtype_size(act);
}

ModelRunner::~ModelRunner() = default;

void ModelRunner::copy_blocks(const std::vector<BlockCopy>& copies) {
  for (const BlockCopy& c : copies)
    for (const kernels::PagedKv& layer : kv_) {
      auto* k = static_cast<std::byte*>(layer.k);
      auto* v = static_cast<std::byte*>(layer.v);
      ops_.copy_on_device(k + size_t(c.dst) * block_bytes_, k + size_t(c.src) * block_bytes_,
                          block_bytes_);
      ops_.copy_on_device(v + size_t(c.dst) * block_bytes_, v + size_t(c.src) * block_bytes_,
                          block_bytes_);
    }
}

void ModelRunner::stage(const std::vector<Sequence*>& seqs, const BlockManager* blocks,
                        const BatchLayout& L, int n_pad_seqs, int slot) {
  auto* h = static_cast<int32_t*>(meta_host_[slot].get());
  const int bs = blocks ? blocks->block_size() : 1;
  int t = 0, r = 0;
  h[L.q_start] = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Sequence& s = *seqs[i];
    const auto& table = blocks->table(s.id);
    for (int pos = s.num_computed; pos < int(s.tokens.size()); ++pos, ++t) {
      h[L.tokens + t] = s.tokens[size_t(pos)];
      h[L.positions + t] = pos;
      h[L.slots + t] = table[size_t(pos / bs)] * bs + pos % bs;
    }
    h[L.q_start + int64_t(i) + 1] = t;
    h[L.context_len + int64_t(i)] = int32_t(s.tokens.size());
    h[L.rows + r++] = t - 1;   // fan-out rows are copies of this one (see expand_rows)
    int32_t* row = h + L.block_table + int64_t(i) * L.max_blocks_per_seq;
    std::copy(table.begin(), table.end(), row);
    std::fill(row + table.size(), row + L.max_blocks_per_seq, 0);
  }
  // Padding sequences of a graph batch: one token each that attends to itself in block 0 and
  // is never stored (slot -1, vLLM's convention); their logits are ignored.
  for (int i = int(seqs.size()); i < n_pad_seqs; ++i, ++t) {
    h[L.tokens + t] = 0;
    h[L.positions + t] = 0;
    h[L.slots + t] = -1;
    h[L.q_start + i + 1] = t + 1;
    h[L.context_len + i] = 1;
    h[L.rows + r++] = t;
    int32_t* row = h + L.block_table + int64_t(i) * L.max_blocks_per_seq;
    std::fill(row, row + L.max_blocks_per_seq, 0);
  }
  // Queued: this slot's host buffer is written again two launches later, after this launch's
  // draw was collected (which waited for everything queued before it, this copy included).
  ops_.copy_host_buffer_to_device_queued(meta_dev_, h, size_t(L.total) * sizeof(int32_t));
}

kernels::PagedBatch ModelRunner::batch_view(const BatchLayout& L, int n_seqs, int n_tokens,
                                            int max_q_len, int max_context_len) const {
  kernels::PagedBatch b;
  b.num_seqs = n_seqs;
  b.num_tokens = n_tokens;
  b.q_start = meta_dev_ + L.q_start;
  b.context_len = meta_dev_ + L.context_len;
  b.block_table = meta_dev_ + L.block_table;
  b.max_blocks_per_seq = L.max_blocks_per_seq;
  b.slot_mapping = meta_dev_ + L.slots;
  b.positions = meta_dev_ + L.positions;
  b.max_q_len = max_q_len;
  b.max_context_len = max_context_len;
  return b;
}

ModelRunner::Launch ModelRunner::launch(const std::vector<Sequence*>& seqs,
                                        const std::vector<int>& fanout, const BlockManager& blocks,
                                        const std::vector<kernels::SamplingRow>& rows,
                                        const Launch* inputs_from) {
  int n_tokens = 0, max_q = 0, max_ctx = 0, mb = 1, n_rows = 0;
  bool decode_only = true;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Sequence& s = *seqs[i];
    n_tokens += s.num_new_tokens();
    max_q = std::max(max_q, s.num_new_tokens());
    max_ctx = std::max(max_ctx, int(s.tokens.size()));
    mb = std::max(mb, int(blocks.table(s.id).size()));
    n_rows += fanout[i];
    decode_only = decode_only && s.num_new_tokens() == 1 && fanout[i] == 1;
  }
  if (n_rows != int(rows.size()) || n_rows > limits_.max_num_seqs ||
      n_tokens > limits_.max_tokens)
    throw InferError(ErrorKind::Internal,
                     "model runner: batch of " + std::to_string(n_tokens) + " tokens / " +
                         std::to_string(n_rows) + " rows exceeds the workspace (" +
                         std::to_string(limits_.max_tokens) + " / " +
                         std::to_string(limits_.max_num_seqs) + ")");
  const int n_seqs = int(seqs.size());
  if (inputs_from && (!decode_only || inputs_from->n_rows != n_seqs))
    throw InferError(ErrorKind::Internal,
                     "model runner: a step fed by the previous draw must decode one token per "
                     "sequence of that draw (" + std::to_string(n_seqs) + " sequences, " +
                         std::to_string(inputs_from->n_rows) + " rows drawn)");
  if (outstanding_ >= 2)
    throw InferError(ErrorKind::Internal,
                     "model runner: a third step launched before the first was collected (two "
                     "slots of metadata and draws)");
  Launch l;
  l.slot = next_slot_;
  l.n_rows = n_rows;
  l.decode_only = decode_only;
  int padded = graphs_ && decode_only ? graphs_->padded_batch(n_seqs) : 0;
  if (padded > 0) {
    BatchLayout L = BatchLayout::compact(padded, padded, padded, limits_.max_blocks_per_seq);
    stage(seqs, &blocks, L, padded, l.slot);
    if (inputs_from) ops_.copy_sampled_tokens(inputs_from->slot, meta_dev_ + L.tokens, n_seqs);
    graphs_->replay(padded);
    ++graph_replays_;
  } else {
    BatchLayout L = BatchLayout::compact(n_tokens, n_seqs, n_seqs, mb);
    stage(seqs, &blocks, L, n_seqs, l.slot);
    if (inputs_from) ops_.copy_sampled_tokens(inputs_from->slot, meta_dev_ + L.tokens, n_seqs);
    kernels::PagedBatch b = batch_view(L, n_seqs, n_tokens, max_q, max_ctx);
    // Decode-only: one token and one logits row per sequence, in order (no row gather).
    model_->forward(meta_dev_ + L.tokens, b, decode_only ? nullptr : meta_dev_ + L.rows, n_seqs,
                    logits_);
    if (n_rows > n_seqs) expand_rows(fanout);
  }
  launched_at_ = std::chrono::steady_clock::now();
  ops_.sample_enqueue(l.slot, logits_, n_rows, cfg_.vocab_size, rows.data());
  next_slot_ ^= 1;   // only now: a launch that threw leaves its slot to the next one
  ++outstanding_;
  return l;
}

void ModelRunner::collect(const Launch& l, std::vector<int32_t>& tokens,
                          std::vector<float>& logprobs) {
  tokens.resize(size_t(l.n_rows));
  logprobs.resize(size_t(l.n_rows));
  --outstanding_;
  ops_.sample_collect(l.slot, tokens.data(), logprobs.data());
}

void ModelRunner::expand_rows(const std::vector<int>& fanout) {
  // Row i (sequence i's logits) becomes rows start_i .. start_i + fanout[i] - 1. start_i >= i,
  // so going from the last sequence down never overwrites a row before it is read.
  const size_t row_bytes = size_t(cfg_.vocab_size) * dtype_size(ops_.act_dtype());
  auto* base = static_cast<std::byte*>(logits_);
  int start = 0;
  std::vector<int> starts;
  for (int f : fanout) {
    starts.push_back(start);
    start += f;
  }
  for (size_t i = fanout.size(); i-- > 0;)
    for (int j = fanout[i] - 1; j >= 0; --j) {
      size_t dst = size_t(starts[i] + j);
      if (dst != i) ops_.copy_on_device(base + dst * row_bytes, base + i * row_bytes, row_bytes);
    }
}

int ModelRunner::capture_graphs(int max_batch) {
  graphs_ = CudaGraphs::capture(*this, std::min(max_batch, limits_.max_num_seqs));
  return num_graphs();
}

int ModelRunner::num_graphs() const { return graphs_ ? graphs_->size() : 0; }

}  // namespace siesta::infer
