// Turns one scheduled step into a forward pass and sampled tokens: stages the PagedBatch
// arrays in pinned host memory, moves them to the device in ONE copy (a kernel that reads the
// pinned buffer), runs InferenceModel::forward (or replays a captured CUDA graph for a decode
// batch), then queues the draw of every row; collect() reads it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "siesta/infer/block_manager.hpp"
#include "siesta/infer/sequence.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/model/config.hpp"
#include "siesta/model/inference.hpp"

namespace siesta::infer {

struct RunnerLimits {
  int max_num_seqs = 0;        // sequences (and sampled rows) per step
  int max_tokens = 0;          // new tokens per step
  int max_blocks_per_seq = 0;  // blocks_for(max_model_len)
  int max_model_len = 0;
};

// Where the int32 arrays of one batch sit in the metadata region (element offsets).
struct BatchLayout {
  int64_t tokens = 0, positions = 0, slots = 0, q_start = 0, context_len = 0, rows = 0,
          block_table = 0, total = 0;
  int max_blocks_per_seq = 0;
  static BatchLayout compact(int n_tokens, int n_seqs, int n_rows, int max_blocks_per_seq);
};

class CudaGraphs;   // cuda_graphs.cpp (GPU builds); decode graphs per padded batch size

class ModelRunner {
 public:
  // Bytes of the "infer_workspace" allocation: model workspace, logits, metadata.
  static size_t workspace_bytes(const model::ModelConfig& cfg, DType act, const RunnerLimits& l);

  ModelRunner(const model::ModelConfig& cfg, kernels::Ops& ops, const model::ModelWeights& w,
              const float* rope_dev, std::vector<kernels::PagedKv> kv, void* workspace,
              size_t workspace_bytes, const RunnerLimits& limits);
  ~ModelRunner();

  // Copy-on-write of whole blocks (every layer's K and V), before the forward that writes them.
  void copy_blocks(const std::vector<BlockCopy>& copies);

  // A step queued on the device (forward and sampling); collect() reads its draw. At most
  // two are outstanding at a time, collected in launch order (the engine's lookahead).
  struct Launch {
    int slot = -1;   // sampling result slot and host metadata buffer
    int n_rows = 0;
    bool decode_only = false;   // one new token and one row per sequence
  };
  // Queues the new tokens of seqs and the draw of rows.size() tokens: fanout[i] rows from the
  // last new token of seqs[i], in order. inputs_from (a decode step of one new token per
  // sequence only): the step whose draw, still on the device, is this step's input tokens, one
  // per sequence in order; the host's tokens at those positions are placeholders.
  Launch launch(const std::vector<Sequence*>& seqs, const std::vector<int>& fanout,
                const BlockManager& blocks, const std::vector<kernels::SamplingRow>& rows,
                const Launch* inputs_from = nullptr);
  // Waits for l's draw (not for anything queued after it); tokens/logprobs get l.n_rows.
  void collect(const Launch& l, std::vector<int32_t>& tokens, std::vector<float>& logprobs);

  // Captures decode graphs for padded batch sizes up to max_batch (GPU only; a no-op
  // returning 0 elsewhere). The KV cache and weights may hold anything: graphs record
  // addresses, not contents.
  int capture_graphs(int max_batch);
  int num_graphs() const;
  uint64_t num_graph_replays() const { return graph_replays_; }
  // When the last launch() had its forward enqueued (graph replayed or kernels launched).
  std::chrono::steady_clock::time_point forward_launched_at() const { return launched_at_; }

 private:
  // Writes seqs' metadata (then padding sequences up to n_pad_seqs) at layout L and copies it
  // to the device. blocks may be null when seqs is empty.
  void stage(const std::vector<Sequence*>& seqs, const BlockManager* blocks,
             const BatchLayout& L, int n_pad_seqs, int slot = 0);
  // Spreads one logits row per sequence into fanout[i] consecutive rows, in place.
  void expand_rows(const std::vector<int>& fanout);
  kernels::PagedBatch batch_view(const BatchLayout& L, int n_seqs, int n_tokens, int max_q_len,
                                 int max_context_len) const;

  model::ModelConfig cfg_;
  kernels::Ops& ops_;
  RunnerLimits limits_;
  std::vector<kernels::PagedKv> kv_;
  size_t block_bytes_ = 0;               // one block of one layer's K (or V)
  std::unique_ptr<model::InferenceModel> model_;
  void* logits_ = nullptr;               // [max_num_seqs, vocab] act dtype
  int32_t* meta_dev_ = nullptr;          // int32 metadata region
  // Its staging copies (Ops::host_buffer: pinned on CUDA), one per outstanding launch: the
  // upload of one may still be queued while the next is staged.
  std::shared_ptr<void> meta_host_[2];
  int next_slot_ = 0;
  int outstanding_ = 0;   // launched, not collected (at most 2: the slots)
  std::unique_ptr<CudaGraphs> graphs_;
  uint64_t graph_replays_ = 0;
  std::chrono::steady_clock::time_point launched_at_{};
  friend class CudaGraphs;
};

}  // namespace siesta::infer
