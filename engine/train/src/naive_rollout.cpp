// Cache-less batched sampling over TrainingModel::logits (see naive_rollout.hpp).
#include "siesta/train/naive_rollout.hpp"

#include <algorithm>

#include "siesta/train/error.hpp"
#include "siesta/train/rng.hpp"
#include "siesta/train/tokenizer.hpp"

namespace siesta::train {

std::vector<Rollout> naive_rollout(Trainer& trainer, const std::vector<std::vector<int32_t>>& prompts,
                                   const NaiveSamplingOptions& o) {
  if (o.samples_per_prompt < 1 || o.max_new_tokens < 1)
    throw TrainError("naive_rollout: samples_per_prompt and max_new_tokens must be >= 1");
  kernels::Ops& ops = trainer.ops();
  const int vocab = trainer.config().vocab_size;
  const size_t act = dtype_size(ops.act_dtype());
  const int max_rows = trainer.options().micro_batch_rows;
  const int max_seq = trainer.options().max_seq_len;
  if (trainer.state_offloaded())
    throw TrainError("naive_rollout: trainer state is offloaded (call restore_state)");

  std::vector<Rollout> out;
  for (size_t p = 0; p < prompts.size(); ++p)
    for (int s = 0; s < o.samples_per_prompt; ++s) {
      if (prompts[p].empty()) throw TrainError("naive_rollout: empty prompt (needs at least bos)");
      out.push_back({prompts[p], {}, {}, 0});
    }
  // One scratch allocation: all-position logits, the gathered last-position rows, the tokens.
  const size_t all_bytes = size_t(max_rows) * max_seq * vocab * act;
  const size_t rows_bytes = size_t(max_rows) * vocab * act;
  char* scratch = static_cast<char*>(
      trainer.logits_buffer(all_bytes + rows_bytes + size_t(max_rows) * max_seq * 4));
  void* logits = scratch;
  void* rows_logits = scratch + all_bytes;
  int32_t* tok_dev = reinterpret_cast<int32_t*>(scratch + all_bytes + rows_bytes);

  // Chunks of at most micro_batch_rows sequences, each generated to the end.
  for (size_t c0 = 0; c0 < out.size(); c0 += size_t(max_rows)) {
    const int n = int(std::min(out.size() - c0, size_t(max_rows)));
    std::vector<bool> done(n, false);
    std::vector<kernels::SamplingRow> rows(n);
    for (int i = 0; i < n; ++i) {
      const size_t g = c0 + size_t(i);
      rows[i].temperature = o.temperature;
      rows[i].seed = mix_seed(o.seed, g);
    }
    for (int step = 0; step < o.max_new_tokens; ++step) {
      int T = 0;
      for (int i = 0; i < n; ++i) {
        const Rollout& r = out[c0 + i];
        T = std::max(T, int(r.prompt_tokens.size() + r.completion_tokens.size()));
      }
      if (T > max_seq)
        throw TrainError("naive_rollout: sequence of " + std::to_string(T) +
                         " tokens exceeds the trainer's max_seq_len " + std::to_string(max_seq));
      std::vector<int32_t> tokens(size_t(n) * T, ByteTokenizer::kPad);
      std::vector<int> last(n);
      for (int i = 0; i < n; ++i) {
        const Rollout& r = out[c0 + i];
        std::copy(r.prompt_tokens.begin(), r.prompt_tokens.end(), tokens.begin() + size_t(i) * T);
        std::copy(r.completion_tokens.begin(), r.completion_tokens.end(),
                  tokens.begin() + size_t(i) * T + r.prompt_tokens.size());
        last[i] = int(r.prompt_tokens.size() + r.completion_tokens.size()) - 1;
      }
      ops.copy_to_device(tok_dev, tokens.data(), tokens.size() * 4);
      trainer.model().logits(tok_dev, n, T, logits);
      // Gather each row's last-position logits into one [n, vocab] block for the sampler.
      for (int i = 0; i < n; ++i)
        ops.copy_on_device(static_cast<char*>(rows_logits) + size_t(i) * vocab * act,
                           static_cast<char*>(logits) + (size_t(i) * T + last[i]) * vocab * act,
                           size_t(vocab) * act);
      std::vector<int32_t> tok(n);
      std::vector<float> lp(n);
      for (int i = 0; i < n; ++i) rows[i].step = uint64_t(step);
      ops.sample(tok.data(), lp.data(), rows_logits, n, vocab, rows.data());
      ops.synchronize();
      bool all_done = true;
      for (int i = 0; i < n; ++i) {
        if (done[i]) continue;
        Rollout& r = out[c0 + i];
        r.completion_tokens.push_back(tok[i]);
        r.completion_logprobs.push_back(lp[i]);
        done[i] = tok[i] == ByteTokenizer::kEos;
        all_done = all_done && done[i];
      }
      if (all_done) break;
    }
  }
  return out;
}

}  // namespace siesta::train
