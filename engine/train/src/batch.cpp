// Building and checking padded training batches.
#include "siesta/train/batch.hpp"

#include <algorithm>
#include <string>

#include "siesta/train/error.hpp"

namespace siesta::train {

int64_t TrainBatch::trained_tokens() const {
  return std::count_if(mask.begin(), mask.end(), [](float m) { return m != 0.f; });
}

void TrainBatch::validate(int32_t vocab_size) const {
  const size_t n = size_t(rows) * size_t(cols);
  auto fail = [](const std::string& what) { throw TrainError("TrainBatch: " + what); };
  if (rows <= 0 || cols < 2)
    fail("shape [" + std::to_string(rows) + ", " + std::to_string(cols) +
         "] is empty (need rows >= 1 and cols >= 2)");
  if (tokens.size() != n || mask.size() != n)
    fail("tokens (" + std::to_string(tokens.size()) + ") and mask (" + std::to_string(mask.size()) +
         ") must both hold rows * cols = " + std::to_string(n) + " entries");
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab_size)
      fail("token id " + std::to_string(t) + " is outside the vocabulary [0, " +
           std::to_string(vocab_size) + ")");
  for (int r = 0; r < rows; ++r)
    if (mask[size_t(r) * cols] != 0.f)
      fail("row " + std::to_string(r) + " trains column 0, which has no preceding context");
  if (objective == Objective::Grpo) {
    if (old_logprobs.size() != n)
      fail("GRPO needs old_logprobs of rows * cols = " + std::to_string(n) + " entries (got " +
           std::to_string(old_logprobs.size()) + ")");
    if (advantages.size() != size_t(rows))
      fail("GRPO needs one advantage per row (" + std::to_string(rows) + ", got " +
           std::to_string(advantages.size()) + ")");
    if (!ref_logprobs.empty() && ref_logprobs.size() != n)
      fail("ref_logprobs must be empty or hold rows * cols entries");
  }
}

TrainBatch make_sft_batch(const std::vector<TaskExample>& examples, const ByteTokenizer& tok) {
  TrainBatch b;
  b.objective = Objective::Sft;
  b.rows = int(examples.size());
  std::vector<std::vector<int32_t>> rows;
  std::vector<size_t> prompt_len;
  for (const auto& ex : examples) {
    auto ids = tok.encode(ex.prompt, true, false);
    prompt_len.push_back(ids.size());
    auto ans = tok.encode(ex.answer, false, true);
    ids.insert(ids.end(), ans.begin(), ans.end());
    b.cols = std::max(b.cols, int(ids.size()));
    rows.push_back(std::move(ids));
  }
  b.tokens.assign(size_t(b.rows) * b.cols, tok.pad());
  b.mask.assign(size_t(b.rows) * b.cols, 0.f);
  for (int r = 0; r < b.rows; ++r) {
    std::copy(rows[r].begin(), rows[r].end(), b.tokens.begin() + size_t(r) * b.cols);
    for (size_t t = prompt_len[r]; t < rows[r].size(); ++t) b.mask[size_t(r) * b.cols + t] = 1.f;
  }
  return b;
}

TrainBatch make_grpo_batch(const std::vector<Rollout>& rollouts,
                           const std::vector<float>& advantages, const ByteTokenizer& tok) {
  if (advantages.size() != rollouts.size())
    throw TrainError("make_grpo_batch: " + std::to_string(rollouts.size()) + " rollouts but " +
                     std::to_string(advantages.size()) + " advantages (need one each)");
  TrainBatch b;
  b.objective = Objective::Grpo;
  b.rows = int(rollouts.size());
  for (const auto& r : rollouts) {
    if (r.completion_logprobs.size() != r.completion_tokens.size())
      throw TrainError("make_grpo_batch: a rollout has " +
                       std::to_string(r.completion_tokens.size()) + " completion tokens but " +
                       std::to_string(r.completion_logprobs.size()) + " log-probs");
    if (r.prompt_tokens.empty())
      throw TrainError("make_grpo_batch: a rollout has an empty prompt (it needs at least bos)");
    b.cols = std::max(b.cols, int(r.prompt_tokens.size() + r.completion_tokens.size()));
  }
  b.cols = std::max(b.cols, 2);
  const size_t n = size_t(b.rows) * b.cols;
  b.tokens.assign(n, tok.pad());
  b.mask.assign(n, 0.f);
  b.old_logprobs.assign(n, 0.f);
  b.advantages = advantages;
  for (int i = 0; i < b.rows; ++i) {
    const Rollout& r = rollouts[i];
    const size_t row = size_t(i) * b.cols, p = r.prompt_tokens.size();
    std::copy(r.prompt_tokens.begin(), r.prompt_tokens.end(), b.tokens.begin() + row);
    for (size_t t = 0; t < r.completion_tokens.size(); ++t) {
      b.tokens[row + p + t] = r.completion_tokens[t];
      b.mask[row + p + t] = 1.f;
      b.old_logprobs[row + p + t] = r.completion_logprobs[t];
    }
  }
  return b;
}

}  // namespace siesta::train
