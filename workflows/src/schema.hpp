// The one description of the workflow schema: key names, allowed values and documentation.
// Each consumer (the YAML reader, to_yaml, the README reference, the path list used for
// did-you-mean) is a SchemaVisitor walked over describe_workflow().
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "siesta/workflows/spec.hpp"

namespace siesta::workflows::detail {

struct IntRule {
  IntRule(int64_t lo, int64_t hi, std::vector<int64_t> only = {}, std::string reason = "")
      : min(lo), max(hi), one_of(std::move(only)), why(std::move(reason)) {}
  int64_t min = 0;
  int64_t max = 0;
  std::vector<int64_t> one_of;  // when set, only these values
  std::string why;              // appended to out-of-range messages
  std::string allowed() const;
  bool accepts(int64_t v) const;
};

struct RealRule {
  RealRule(double lo, double hi, bool lo_open = false, bool hi_open = false, std::string reason = "")
      : min(lo), max(hi), min_open(lo_open), max_open(hi_open), why(std::move(reason)) {}
  double min = 0;
  double max = 0;
  bool min_open = false;  // (min, ...
  bool max_open = false;  // ..., max)
  std::string why;
  std::string allowed() const;
  bool accepts(double v) const;
};

struct BytesRule {
  uint64_t min = 0;
  uint64_t max = 0;
  std::string allowed() const;
};

struct TextRule {
  std::string allowed;
  // Returns what is wrong with the value, or "" when it is fine.
  std::function<std::string(const std::string&)> check;
};

struct ChoiceRule {
  std::vector<std::string> names;
  std::string allowed() const;
};

class SchemaVisitor {
 public:
  virtual ~SchemaVisitor() = default;
  virtual void section(std::string_view key, std::string_view doc,
                       const std::function<void()>& body) = 0;
  virtual void integer(std::string_view key, int64_t& v, const IntRule& r, std::string_view doc) = 0;
  virtual void real(std::string_view key, double& v, const RealRule& r, std::string_view doc) = 0;
  virtual void real_pair(std::string_view key, std::array<double, 2>& v, const RealRule& r,
                         std::string_view doc) = 0;
  virtual void optional_real(std::string_view key, std::optional<double>& v, const RealRule& r,
                             std::string_view doc) = 0;
  virtual void optional_bytes(std::string_view key, std::optional<uint64_t>& v,
                              const BytesRule& r, std::string_view doc) = 0;
  virtual void boolean(std::string_view key, bool& v, std::string_view doc) = 0;
  virtual void text(std::string_view key, std::string& v, const TextRule& r,
                    std::string_view doc) = 0;
  virtual void choice(std::string_view key, int& index, const ChoiceRule& r,
                      std::string_view doc) = 0;
  // A list of stages; each visitor handles `type` itself and calls describe_stage_fields.
  virtual void stages(std::string_view key, std::vector<StageSpec>& v, std::string_view doc) = 0;
};

// Typed adapters: the spec uses int and enums, visitors see int64_t and an index.
template <class T>
void integer(SchemaVisitor& v, std::string_view key, T& x, const IntRule& r, std::string_view doc) {
  int64_t t = static_cast<int64_t>(x);
  v.integer(key, t, r, doc);
  x = static_cast<T>(t);  // readers only store values that passed r
}

template <class E>
void choice(SchemaVisitor& v, std::string_view key, E& e, const ChoiceRule& r,
            std::string_view doc) {
  int i = static_cast<int>(e);
  v.choice(key, i, r, doc);
  e = static_cast<E>(i);
}

void describe_workflow(SchemaVisitor& v, WorkflowSpec& s);
// The fields of one stage, without `type`.
void describe_stage_fields(SchemaVisitor& v, StageSpec& s);
const ChoiceRule& stage_type_rule();
inline constexpr std::string_view kStageTypeDoc =
    "what the stage does: supervised warm-up, GRPO reinforcement learning, or evaluation";

// Every leaf path ("trainer.lr", "algorithm.stages[].group_size"), for did-you-mean.
const std::vector<std::string>& all_field_paths();
// Field names that exist in some stage type, with the types that have them ("grpo").
std::string stage_types_with_field(std::string_view key);

}  // namespace siesta::workflows::detail
