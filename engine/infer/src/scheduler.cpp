// Scheduler::schedule — see the header for the policy.
#include "siesta/infer/scheduler.hpp"

#include <algorithm>
#include <string>

#include "siesta/infer/error.hpp"

namespace siesta::infer {

int Sequence::fanout() const {
  if (!request || request->forked) return 1;
  return request->params.n;
}

bool Sequence::before(const Sequence& o) const {
  uint64_t a = request ? request->arrival : 0, b = o.request ? o.request->arrival : 0;
  if (a != b) return a < b;
  if (index != o.index) return index < o.index;
  return id < o.id;
}

Scheduler::Scheduler(SchedulerConfig cfg, BlockManager& blocks) : cfg_(cfg), blocks_(blocks) {
  if (cfg.max_num_seqs < 1 || cfg.max_num_batched_tokens < cfg.max_num_seqs)
    throw InferError(ErrorKind::InvalidArgument,
                     "scheduler needs max_num_seqs >= 1 (got " + std::to_string(cfg.max_num_seqs) +
                         ") and max_num_batched_tokens >= max_num_seqs (got " +
                         std::to_string(cfg.max_num_batched_tokens) + ")");
}

void Scheduler::insert_sorted(std::vector<Sequence*>& q, Sequence* s) {
  auto it = std::upper_bound(q.begin(), q.end(), s,
                             [](const Sequence* a, const Sequence* b) { return a->before(*b); });
  q.insert(it, s);
}

void Scheduler::add_waiting(Sequence* s) {
  s->status = SeqStatus::Waiting;
  insert_sorted(waiting_, s);
}

void Scheduler::add_running(Sequence* s) {
  s->status = SeqStatus::Running;
  insert_sorted(running_, s);
}

int Scheduler::num_running_slots() const {
  int n = 0;
  for (const Sequence* s : running_) n += s->fanout();
  return n;
}

void Scheduler::preempt(Sequence* s) {
  // Recompute: the sequence keeps its tokens and recomputes their K/V when readmitted; the
  // sampled tokens stay as they were, so the output is unchanged (sampling is keyed by seed
  // and step, not by batch composition).
  running_.erase(std::find(running_.begin(), running_.end(), s));
  blocks_.free(s->id);
  s->num_computed = 0;
  ++s->num_preemptions;
  ++preemptions_;
  add_waiting(s);
}

void Scheduler::remove(Sequence* s) {
  for (auto* q : {&waiting_, &running_}) {
    auto it = std::find(q->begin(), q->end(), s);
    if (it != q->end()) q->erase(it);
  }
  blocks_.free(s->id);
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  int budget = cfg_.max_num_batched_tokens;

  // 1. Running sequences, oldest first; the newest give their blocks up when needed.
  for (size_t i = 0; i < running_.size();) {
    Sequence* s = running_[i];
    int from = s->num_computed, to = int(s->tokens.size());
    bool self_preempted = false;
    while (blocks_.blocks_needed_to_write(s->id, from, to) > blocks_.num_free_blocks()) {
      // The newest running sequence sits at or after index i: not scheduled in this step yet,
      // so it has no copies or budget to give back.
      Sequence* victim = running_.back();
      preempt(victim);
      out.preempted.push_back(victim);
      if (victim == s) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    if (s->num_new_tokens() > budget) break;
    blocks_.prepare_write(s->id, from, to, out.copies);
    out.seqs.push_back(s);
    out.num_tokens += s->num_new_tokens();
    budget -= s->num_new_tokens();
    ++i;
  }
  // 2. Waiting prompts, FCFS; none when this step had to preempt (memory is short).
  if (out.preempted.empty()) {
    int slots = num_running_slots();
    while (!waiting_.empty()) {
      Sequence* s = waiting_.front();
      int n_new = s->num_new_tokens();
      if (n_new > budget) break;
      if (slots + s->fanout() > cfg_.max_num_seqs) break;
      if (!blocks_.can_allocate(int(s->tokens.size()))) break;
      blocks_.allocate(s->id, int(s->tokens.size()));
      waiting_.erase(waiting_.begin());
      add_running(s);
      out.seqs.push_back(s);
      out.num_tokens += n_new;
      budget -= n_new;
      slots += s->fanout();
    }
  }
  for (Sequence* s : out.seqs)
    if (s->num_computed == 0 || s->num_new_tokens() > 1) ++out.num_prefills;
  return out;
}

}  // namespace siesta::infer
