// YAML tree -> WorkflowSpec, one error per problem, all of them collected.
#include "yaml_reader.hpp"

#include <algorithm>

#include "scalars.hpp"
#include "suggest.hpp"

namespace siesta::workflows::detail {

namespace {

bool is_plain(const YAML::Node& n) { return n.Tag() == "?"; }

// What was found, for "expected X, found Y".
std::string found(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  if (n.IsMap()) return "a mapping";
  if (n.IsSequence()) return "a list";
  if (!is_plain(n)) return "the quoted string '" + n.Scalar() + "'";
  return "'" + n.Scalar() + "'";
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

YamlReader::YamlReader(std::string origin, bool use_marks, int source_index,
                       std::vector<Diagnostic>& out, LocationMap& locations)
    : origin_(std::move(origin)), use_marks_(use_marks), source_index_(source_index), out_(out),
      locations_(locations) {}

void YamlReader::read(const YAML::Node& root, WorkflowSpec& spec) {
  if (!root.IsDefined() || root.IsNull()) return;  // an empty file: every default
  if (!push(root, "")) return;
  describe_workflow(*this, spec);
  pop();
}

void YamlReader::error(const YAML::Node& at, const std::string& path, const std::string& message,
                       const std::string& allowed) {
  Diagnostic d;
  d.origin = origin_;
  d.source_index = source_index_;
  if (use_marks_ && at.IsDefined() && !at.Mark().is_null()) {
    d.line = at.Mark().line + 1;
    d.column = at.Mark().column + 1;
  }
  d.path = path;
  d.message = message;
  d.allowed = allowed;
  out_.push_back(std::move(d));
}

bool YamlReader::push(const YAML::Node& node, std::string path, bool is_stage,
                      std::string stage_type) {
  if (!node.IsMap()) {
    error(node, path.empty() ? "(top level)" : path,
          "expected a mapping of keys, found " + found(node), "");
    return false;
  }
  Frame f{std::move(path), {}, {}, is_stage, std::move(stage_type)};
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string key = it->first.Scalar();
    auto dup = std::find_if(f.entries.begin(), f.entries.end(),
                            [&](const Entry& e) { return e.key == key; });
    if (dup != f.entries.end()) {
      error(it->first, f.path.empty() ? key : f.path + "." + key,
            "duplicate key (first set at line " + std::to_string(dup->key_node.Mark().line + 1) +
                ")",
            "");
      continue;
    }
    f.entries.push_back({key, it->first, it->second, false});
  }
  stack_.push_back(std::move(f));
  return true;
}

std::string YamlReader::child_path(std::string_view key) const {
  const auto& p = stack_.back().path;
  return p.empty() ? std::string(key) : p + "." + std::string(key);
}

const YamlReader::Entry* YamlReader::take(std::string_view key) {
  auto& f = stack_.back();
  f.known.emplace_back(key);
  for (auto& e : f.entries) {
    if (e.key != key) continue;
    e.used = true;
    // A null value's mark points past the key (often the next line): name the key instead.
    const YAML::Node& at = e.value.IsNull() ? e.key_node : e.value;
    Location loc{origin_, 0, 0, source_index_};
    if (use_marks_ && !at.Mark().is_null()) {
      loc.line = at.Mark().line + 1;
      loc.column = at.Mark().column + 1;
    }
    locations_[child_path(key)] = loc;
    return &e;
  }
  return nullptr;
}

void YamlReader::pop() {
  Frame f = std::move(stack_.back());
  stack_.pop_back();
  for (const auto& e : f.entries) {
    if (e.used) continue;
    std::string path = f.path.empty() ? e.key : f.path + "." + e.key;
    std::string msg = "unknown key";
    if (auto near = closest(e.key, f.known)) {
      msg += "; did you mean '" + *near + "'?";
    } else if (f.is_stage && !stage_types_with_field(e.key).empty()) {
      msg += "; '" + e.key + "' belongs to " + stage_types_with_field(e.key) +
             " stages, this is a " + f.stage_type + " stage";
    } else {
      // A key put in the wrong section ("lr" at the top): point at where it lives.
      std::vector<std::string> leaves;
      for (const auto& p : all_field_paths()) leaves.push_back(p.substr(p.rfind('.') + 1));
      if (auto near_leaf = closest(e.key, leaves)) {
        for (const auto& p : all_field_paths())
          if (p.substr(p.rfind('.') + 1) == *near_leaf) {
            msg += "; did you mean '" + p + "'?";
            break;
          }
      }
    }
    error(e.key_node, path, msg, join(f.known));
  }
}

void YamlReader::section(std::string_view key, std::string_view,
                         const std::function<void()>& body) {
  const Entry* e = take(key);
  if (!e || e->value.IsNull()) return;  // absent or empty: defaults stay
  const YAML::Node value = e->value;    // push() grows stack_; keep no pointer into it
  if (!push(value, child_path(key))) return;
  body();
  pop();
}

bool YamlReader::scalar(const Entry& e, const std::string& what, const std::string& allowed) {
  if (e.value.IsScalar()) return true;
  if (e.value.IsNull()) {
    error(e.key_node, child_path(e.key), "missing value; expected " + what, allowed);
  } else {
    error(e.value, child_path(e.key), "expected " + what + ", found " + found(e.value), allowed);
  }
  return false;
}

void YamlReader::integer(std::string_view key, int64_t& v, const IntRule& r, std::string_view) {
  const Entry* e = take(key);
  if (!e || !scalar(*e, "an integer", r.allowed())) return;
  auto x = is_plain(e->value) ? parse_int(e->value.Scalar()) : std::nullopt;
  if (!x) {
    error(e->value, child_path(key), "expected an integer, found " + found(e->value), r.allowed());
    return;
  }
  if (!r.accepts(*x)) {
    std::string msg = std::to_string(*x) + (r.one_of.empty() ? " is out of range" : " is not allowed");
    if (!r.why.empty()) msg += "; " + r.why;
    error(e->value, child_path(key), msg, r.allowed());
    return;
  }
  v = *x;
}

void YamlReader::real(std::string_view key, double& v, const RealRule& r, std::string_view) {
  const Entry* e = take(key);
  if (!e || !scalar(*e, "a number", r.allowed())) return;
  auto x = is_plain(e->value) ? parse_real(e->value.Scalar()) : std::nullopt;
  if (!x) {
    error(e->value, child_path(key), "expected a number, found " + found(e->value), r.allowed());
    return;
  }
  if (!r.accepts(*x)) {
    std::string msg = e->value.Scalar() + " is out of range";
    if (!r.why.empty()) msg += "; " + r.why;
    error(e->value, child_path(key), msg, r.allowed());
    return;
  }
  v = *x;
}

void YamlReader::real_pair(std::string_view key, std::array<double, 2>& v, const RealRule& r,
                           std::string_view) {
  const Entry* e = take(key);
  if (!e) return;
  const std::string allowed = "[a, b], each in " + r.allowed();
  if (!e->value.IsSequence() || e->value.size() != 2) {
    error(e->value.IsNull() ? e->key_node : e->value, child_path(key),
          "expected a list of two numbers, found " + found(e->value) +
              (e->value.IsSequence() ? " of " + std::to_string(e->value.size()) : ""),
          allowed);
    return;
  }
  std::array<double, 2> out = v;
  bool ok = true;
  for (size_t i = 0; i < 2; ++i) {
    const YAML::Node item = e->value[i];
    std::string path = child_path(key) + "[" + std::to_string(i) + "]";
    auto x = item.IsScalar() && is_plain(item) ? parse_real(item.Scalar()) : std::nullopt;
    if (!x) {
      error(item, path, "expected a number, found " + found(item), r.allowed());
      ok = false;
    } else if (!r.accepts(*x)) {
      error(item, path, item.Scalar() + " is out of range", r.allowed());
      ok = false;
    } else {
      out[i] = *x;
    }
  }
  if (ok) v = out;
}

void YamlReader::optional_real(std::string_view key, std::optional<double>& v, const RealRule& r,
                               std::string_view doc) {
  const Entry* e = take(key);
  if (!e) return;
  if (e->value.IsNull()) {
    v.reset();
    return;
  }
  stack_.back().known.pop_back();  // real() takes the key again
  double x = 0;
  size_t before = out_.size();
  real(key, x, r, doc);
  if (out_.size() == before) v = x;
}

void YamlReader::optional_bytes(std::string_view key, std::optional<uint64_t>& v,
                                const BytesRule& r, std::string_view) {
  const Entry* e = take(key);
  if (!e) return;
  if (e->value.IsNull()) {
    v.reset();
    return;
  }
  if (!scalar(*e, "a byte size", r.allowed())) return;
  auto x = parse_bytes(e->value.Scalar());
  if (!x) {
    error(e->value, child_path(key), "expected a byte size, found " + found(e->value),
          r.allowed());
    return;
  }
  if (*x < r.min || *x > r.max) {
    error(e->value, child_path(key), e->value.Scalar() + " is out of range", r.allowed());
    return;
  }
  v = *x;
}

void YamlReader::boolean(std::string_view key, bool& v, std::string_view) {
  const Entry* e = take(key);
  if (!e || !scalar(*e, "true or false", "true, false")) return;
  auto x = is_plain(e->value) ? parse_bool(e->value.Scalar()) : std::nullopt;
  if (!x) {
    error(e->value, child_path(key), "expected true or false, found " + found(e->value),
          "true, false");
    return;
  }
  v = *x;
}

void YamlReader::text(std::string_view key, std::string& v, const TextRule& r, std::string_view) {
  const Entry* e = take(key);
  if (!e || !scalar(*e, "a string", r.allowed)) return;
  std::string problem = r.check ? r.check(e->value.Scalar()) : "";
  if (!problem.empty()) {
    error(e->value, child_path(key), problem, r.allowed);
    return;
  }
  v = e->value.Scalar();
}

void YamlReader::choice(std::string_view key, int& index, const ChoiceRule& r, std::string_view) {
  const Entry* e = take(key);
  if (!e || !scalar(*e, "one of the names", r.allowed())) return;
  const std::string& s = e->value.Scalar();
  auto it = std::find(r.names.begin(), r.names.end(), s);
  if (it == r.names.end()) {
    std::string msg = "unknown value '" + s + "'";
    if (auto near = closest(s, r.names)) msg += "; did you mean '" + *near + "'?";
    error(e->value, child_path(key), msg, r.allowed());
    return;
  }
  index = static_cast<int>(it - r.names.begin());
}

void YamlReader::stages(std::string_view key, std::vector<StageSpec>& v, std::string_view) {
  const Entry* e = take(key);
  if (!e) return;
  const std::string path = child_path(key);
  const std::string allowed = "a list of {type: sft|grpo|eval, steps: N, ...}";
  if (e->value.IsSequence() && e->value.size() > 0) {
    std::vector<StageSpec> fresh;
    for (size_t i = 0; i < e->value.size(); ++i)
      read_stage(e->value[i], path + "[" + std::to_string(i) + "]", nullptr, fresh);
    v = std::move(fresh);
    return;
  }
  // An override such as algorithm.stages[1].steps=50 arrives as {1: {steps: 50}}: it edits
  // one existing stage instead of replacing the list.
  if (!use_marks_ && e->value.IsMap()) {
    for (auto it = e->value.begin(); it != e->value.end(); ++it) {
      auto idx = parse_int(it->first.Scalar());
      if (!idx || *idx < 0 || *idx >= static_cast<int64_t>(v.size())) {
        error(it->first, path + "[" + it->first.Scalar() + "]",
              "no such stage; the workflow has " + std::to_string(v.size()) + " stages",
              "0.." + std::to_string(static_cast<int64_t>(v.size()) - 1));
        continue;
      }
      std::vector<StageSpec> unused;
      read_stage(it->second, path + "[" + std::to_string(*idx) + "]", &v[*idx], unused);
    }
    return;
  }
  error(e->value.IsNull() ? e->key_node : e->value, path,
        e->value.IsSequence() ? "needs at least one stage"
                              : "expected a list of stages, found " + found(e->value),
        allowed);
}

void YamlReader::read_stage(const YAML::Node& node, const std::string& path, StageSpec* existing,
                            std::vector<StageSpec>& out) {
  if (!push(node, path, true)) return;
  auto& frame = stack_.back();
  int type = existing ? static_cast<int>(stage_type(*existing)) : -1;
  const Entry* t = take("type");
  if (t) {
    type = -1;  // stays -1 when the value is not a stage type
    choice("type", type, stage_type_rule(), kStageTypeDoc);
    frame.known.pop_back();  // choice() took "type" a second time
  } else if (!existing) {
    error(node, path, "missing key 'type'", stage_type_rule().allowed());
  }
  if (type < 0) {
    // Without a valid type the other keys cannot be judged: do not report them as unknown.
    for (auto& en : frame.entries) en.used = true;
    pop();
    return;
  }
  const auto st_type = static_cast<StageType>(type);
  frame.stage_type = to_string(st_type);
  StageSpec st = existing && stage_type(*existing) == st_type ? *existing : default_stage(st_type);
  describe_stage_fields(*this, st);
  pop();
  if (existing) *existing = st;
  else out.push_back(st);
}

}  // namespace siesta::workflows::detail
