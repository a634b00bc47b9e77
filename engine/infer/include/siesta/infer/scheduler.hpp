// Continuous batching, FCFS (vLLM's scheduler without chunked prefill): every step first
// keeps the running sequences decoding, preempting the newest ones (by recompute: their
// blocks are freed and they rejoin the waiting queue) when blocks run out, then admits
// waiting prompts into the same step while the token budget, the batch size and the free
// blocks allow.
#pragma once

#include <cstdint>
#include <vector>

#include "siesta/infer/block_manager.hpp"
#include "siesta/infer/sequence.hpp"

namespace siesta::infer {

struct SchedulerConfig {
  int max_num_seqs = 256;            // sequences per step (decode batch size)
  int max_num_batched_tokens = 8192; // new tokens per step (prefill + decode)
};

struct SchedulerOutput {
  std::vector<Sequence*> seqs;       // running ones first, then newly admitted prompts
  std::vector<BlockCopy> copies;     // copy-on-write, to perform before the forward
  std::vector<Sequence*> preempted;  // moved back to waiting this step
  int num_tokens = 0;                // sum of num_new_tokens() over seqs
  int num_prefills = 0;              // seqs with more than one new token or none computed
  bool empty() const { return seqs.empty(); }
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig cfg, BlockManager& blocks);

  const SchedulerConfig& config() const { return cfg_; }
  // A new sequence, nothing computed; it waits for admission.
  void add_waiting(Sequence* s);
  // A sequence forked from a running one (its block table is already forked).
  void add_running(Sequence* s);
  // Picks the sequences of the next step and makes their blocks writable.
  SchedulerOutput schedule();
  // Removes a sequence (finished or aborted) wherever it is and frees its blocks.
  void remove(Sequence* s);
  // Sequences counted against max_num_seqs: running ones plus pending fan-out.
  int num_running_slots() const;
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  const std::vector<Sequence*>& running() const { return running_; }
  bool idle() const { return waiting_.empty() && running_.empty(); }
  uint64_t num_preemptions() const { return preemptions_; }

 private:
  void preempt(Sequence* s);
  static void insert_sorted(std::vector<Sequence*>& q, Sequence* s);

  SchedulerConfig cfg_;
  BlockManager& blocks_;
  std::vector<Sequence*> waiting_;   // FCFS order (Sequence::before)
  std::vector<Sequence*> running_;   // FCFS order; the last one is preempted first
  uint64_t preemptions_ = 0;
};

}  // namespace siesta::infer
