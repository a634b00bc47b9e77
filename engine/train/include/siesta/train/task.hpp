// Verifiable toy tasks for RL on a byte tokenizer: integer addition, string reversal, sorting.
// A program computes the reward, prompts are a pure function of (seed, index), and a fixed
// fraction of distinct prompts is held out for evaluation and never produced for training.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace siesta::train {

enum class TaskKind : uint8_t { Addition, Reversal, Sorting };

// "addition", "reversal", "sorting"; throws TrainError naming the allowed names.
TaskKind task_kind_from_name(std::string_view name);
std::string_view task_kind_name(TaskKind kind);

struct TaskSpec {
  TaskKind kind = TaskKind::Addition;
  // Difficulty. Addition: digits per operand; reversal / sorting: characters in the string.
  int min_len = 1;
  int max_len = 2;
  // Reversal / sorting: characters to draw from ("" = "abcdefgh" / "0123456789").
  std::string alphabet = {};
  uint64_t seed = 0;
  // One distinct prompt in eval_holdout_every is held out for evaluation.
  int eval_holdout_every = 8;
};

struct TaskExample {
  std::string prompt;   // e.g. "12+7="
  std::string answer;   // e.g. "19" (the completion to produce, without eos)
};

// How a completion scored. Exact match gives 1; otherwise partial credit below 0.8 for a
// well-formed answer, the right length and characters in the right place, so that an
// untrained model already sees differences in reward within a group.
struct RewardBreakdown {
  double total = 0;
  bool exact = false;
  double format = 0;    // 1 when non-empty and only characters an answer can contain
  double length = 0;    // 1 - |len(c) - len(a)| / len(a), floored at 0
  double overlap = 0;   // positions where c and a agree / max(len(c), len(a))
};

class Task {
 public:
  // Validates the spec; throws TrainError naming the field and the allowed range.
  explicit Task(TaskSpec spec);

  const TaskSpec& spec() const { return spec_; }
  std::string description() const;   // "addition, 1-2 digits"
  TaskExample train_example(uint64_t index) const;
  TaskExample eval_example(uint64_t index) const;
  // n distinct held-out examples (fewer only if the prompt space has fewer), deterministic.
  std::vector<TaskExample> eval_set(int n) const;
  bool is_held_out(std::string_view prompt) const;
  RewardBreakdown score(const TaskExample& ex, std::string_view completion) const;
  double reward(const TaskExample& ex, std::string_view completion) const {
    return score(ex, completion).total;
  }
  // Longest answer this spec can produce, in characters (for max_new_tokens).
  int max_answer_chars() const;
  // Longest prompt, in characters.
  int max_prompt_chars() const;

 private:
  TaskSpec spec_;
  std::string alphabet_;        // characters of the input string (reversal / sorting)
  std::string answer_chars_;    // characters an answer may contain
  TaskExample generate(uint64_t stream_seed) const;
  TaskExample draw(uint64_t stream, uint64_t index, bool held_out) const;
};

}  // namespace siesta::train
