// Prompt generation, held-out split and partial-credit rewards of the toy tasks.
#include "siesta/train/task.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "siesta/train/error.hpp"
#include "siesta/train/rng.hpp"

namespace siesta::train {
namespace {

constexpr uint64_t kTrainStream = 0x747261696eull;   // "train"
constexpr uint64_t kEvalStream = 0x6576616cull;      // "eval"
// Rejection sampling gives up after this many draws: the spec's prompt space is too small
// to hold out prompts (or to have any left for training).
constexpr int kMaxDraws = 10000;

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string random_number(Rng& rng, int digits) {
  std::string s;
  s.push_back(char(digits == 1 ? '0' + rng.below(10) : '1' + rng.below(9)));
  for (int i = 1; i < digits; ++i) s.push_back(char('0' + rng.below(10)));
  return s;
}

std::string add_decimal(const std::string& a, const std::string& b) {
  std::string r;
  int carry = 0;
  for (int i = int(a.size()) - 1, j = int(b.size()) - 1; i >= 0 || j >= 0 || carry; --i, --j) {
    int d = carry + (i >= 0 ? a[i] - '0' : 0) + (j >= 0 ? b[j] - '0' : 0);
    r.push_back(char('0' + d % 10));
    carry = d / 10;
  }
  std::reverse(r.begin(), r.end());
  return r;
}

}  // namespace

TaskKind task_kind_from_name(std::string_view name) {
  if (name == "addition") return TaskKind::Addition;
  if (name == "reversal") return TaskKind::Reversal;
  if (name == "sorting") return TaskKind::Sorting;
  throw TrainError("unknown task '" + std::string(name) +
                   "' (allowed: addition, reversal, sorting)");
}

std::string_view task_kind_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::Addition: return "addition";
    case TaskKind::Reversal: return "reversal";
    case TaskKind::Sorting: return "sorting";
  }
  return "?";
}

Task::Task(TaskSpec spec) : spec_(std::move(spec)) {
  const int max_allowed = spec_.kind == TaskKind::Addition ? 18 : 64;
  if (spec_.min_len < 1 || spec_.max_len < spec_.min_len || spec_.max_len > max_allowed)
    throw TrainError("task " + std::string(task_kind_name(spec_.kind)) + ": length range [" +
                     std::to_string(spec_.min_len) + ", " + std::to_string(spec_.max_len) +
                     "] is invalid (allowed: 1 <= min_len <= max_len <= " +
                     std::to_string(max_allowed) + ")");
  if (spec_.eval_holdout_every < 2)
    throw TrainError("task: eval_holdout_every must be >= 2 (got " +
                     std::to_string(spec_.eval_holdout_every) + ")");
  switch (spec_.kind) {
    case TaskKind::Addition:
      answer_chars_ = "0123456789";
      break;
    case TaskKind::Reversal:
      alphabet_ = spec_.alphabet.empty() ? "abcdefgh" : spec_.alphabet;
      answer_chars_ = alphabet_;
      break;
    case TaskKind::Sorting:
      alphabet_ = spec_.alphabet.empty() ? "0123456789" : spec_.alphabet;
      answer_chars_ = alphabet_;
      break;
  }
  for (char c : alphabet_)
    if (c == '=' || c == '(' || c == ')' || c < 0x21 || c > 0x7e)
      throw TrainError(std::string("task alphabet may hold printable characters other than "
                                   "'=', '(' and ')' (got byte ") +
                       std::to_string(int((unsigned char)c)) + ")");
}

std::string Task::description() const {
  std::string range = std::to_string(spec_.min_len) + "-" + std::to_string(spec_.max_len);
  if (spec_.kind == TaskKind::Addition) return "addition, " + range + " digits";
  return std::string(task_kind_name(spec_.kind)) + ", " + range + " characters of '" +
         alphabet_ + "'";
}

TaskExample Task::generate(uint64_t stream_seed) const {
  Rng rng(stream_seed);
  TaskExample ex;
  if (spec_.kind == TaskKind::Addition) {
    std::string a = random_number(rng, int(rng.between(spec_.min_len, spec_.max_len)));
    std::string b = random_number(rng, int(rng.between(spec_.min_len, spec_.max_len)));
    ex.prompt = a + "+" + b + "=";
    ex.answer = add_decimal(a, b);
    return ex;
  }
  int len = int(rng.between(spec_.min_len, spec_.max_len));
  std::string s;
  for (int i = 0; i < len; ++i) s.push_back(alphabet_[rng.below(alphabet_.size())]);
  if (spec_.kind == TaskKind::Reversal) {
    ex.prompt = "rev(" + s + ")=";
    ex.answer = std::string(s.rbegin(), s.rend());
  } else {
    ex.prompt = "sort(" + s + ")=";
    ex.answer = s;
    std::sort(ex.answer.begin(), ex.answer.end());
  }
  return ex;
}

bool Task::is_held_out(std::string_view prompt) const {
  return fnv1a(prompt) % uint64_t(spec_.eval_holdout_every) == 0;
}

TaskExample Task::draw(uint64_t stream, uint64_t index, bool held_out) const {
  uint64_t base = mix_seed(mix_seed(spec_.seed, stream), index);
  for (int attempt = 0; attempt < kMaxDraws; ++attempt) {
    TaskExample ex = generate(mix_seed(base, uint64_t(attempt)));
    if (is_held_out(ex.prompt) == held_out) return ex;
  }
  throw TrainError("task " + description() + ": no " + (held_out ? "held-out" : "training") +
                   " prompt in " + std::to_string(kMaxDraws) +
                   " draws; the prompt space at this difficulty is too small (raise max_len)");
}

TaskExample Task::train_example(uint64_t index) const { return draw(kTrainStream, index, false); }
TaskExample Task::eval_example(uint64_t index) const { return draw(kEvalStream, index, true); }

std::vector<TaskExample> Task::eval_set(int n) const {
  std::vector<TaskExample> out;
  std::set<std::string> seen;
  // Duplicates are skipped; 4n draws is plenty unless the held-out space is smaller than n.
  for (uint64_t i = 0; int(out.size()) < n && i < uint64_t(4 * n + 64); ++i) {
    TaskExample ex = eval_example(i);
    if (seen.insert(ex.prompt).second) out.push_back(std::move(ex));
  }
  return out;
}

RewardBreakdown Task::score(const TaskExample& ex, std::string_view c) const {
  RewardBreakdown r;
  const std::string& a = ex.answer;
  if (c == a) {
    r.exact = true;
    r.format = r.length = r.overlap = 1;
    r.total = 1;
    return r;
  }
  r.format = !c.empty() && std::all_of(c.begin(), c.end(), [&](char ch) {
               return answer_chars_.find(ch) != std::string::npos;
             })
                 ? 1.0
                 : 0.0;
  double la = double(a.size()), lc = double(c.size());
  r.length = std::max(0.0, 1.0 - std::abs(lc - la) / la);
  size_t same = 0;
  for (size_t i = 0; i < std::min(a.size(), c.size()); ++i) same += a[i] == c[i];
  r.overlap = double(same) / std::max(la, lc);
  r.total = 0.1 * r.format + 0.2 * r.length + 0.5 * r.overlap;
  return r;
}

int Task::max_answer_chars() const {
  return spec_.kind == TaskKind::Addition ? spec_.max_len + 1 : spec_.max_len;
}

int Task::max_prompt_chars() const {
  return spec_.kind == TaskKind::Addition ? 2 * spec_.max_len + 2
         : spec_.kind == TaskKind::Reversal ? spec_.max_len + 6
                                            : spec_.max_len + 7;
}

}  // namespace siesta::train
