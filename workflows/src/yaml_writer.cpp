// WorkflowSpec -> YAML text that parses back to the same spec, with each key's meaning and
// allowed values as a trailing comment.
#include <algorithm>

#include "scalars.hpp"
#include "schema.hpp"
#include "siesta/workflows/load.hpp"

namespace siesta::workflows {

namespace detail {

namespace {

// Plain when YAML would read it back as the same string, double-quoted otherwise.
std::string yaml_string(const std::string& s) {
  bool plain = !s.empty() && s.front() != '-' && !parse_real(s) && !parse_bool(s) &&
               s != "null" && s != "Null" && s != "NULL" && s != "~";
  for (char c : s)
    plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
                      c == '/' || c == '-');
  if (plain) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      q += buf;
      continue;
    }
    q += c;
  }
  return q + "\"";
}

class YamlWriter final : public SchemaVisitor {
 public:
  explicit YamlWriter(bool comments) : comments_(comments) {}

  std::string text() const {
    size_t width = 0;
    for (const auto& r : rows_)
      if (!r.comment.empty() && r.text.size() <= 40) width = std::max(width, r.text.size());
    std::string out;
    for (const auto& r : rows_) {
      std::string line = r.text;
      if (comments_ && !r.comment.empty())
        line += std::string(std::max(width, line.size()) - line.size() + 2, ' ') + "# " + r.comment;
      out += line + "\n";
    }
    return out;
  }

  void section(std::string_view key, std::string_view doc, const std::function<void()>& body) override {
    row(std::string(key) + ":", std::string(doc));
    indent_ += 2;
    body();
    indent_ -= 2;
  }
  void integer(std::string_view k, int64_t& v, const IntRule& r, std::string_view doc) override {
    leaf(k, std::to_string(v), doc, r.allowed());
  }
  void real(std::string_view k, double& v, const RealRule& r, std::string_view doc) override {
    leaf(k, format_real(v), doc, r.allowed());
  }
  void real_pair(std::string_view k, std::array<double, 2>& v, const RealRule& r,
                 std::string_view doc) override {
    leaf(k, "[" + format_real(v[0]) + ", " + format_real(v[1]) + "]", doc, "each " + r.allowed());
  }
  void optional_real(std::string_view k, std::optional<double>& v, const RealRule& r,
                     std::string_view doc) override {
    leaf(k, v ? format_real(*v) : "null", doc, r.allowed() + " or null");
  }
  void optional_bytes(std::string_view k, std::optional<uint64_t>& v, const BytesRule& r,
                      std::string_view doc) override {
    leaf(k, v ? format_bytes(*v) : "null", doc, r.allowed() + "; or null");
  }
  void boolean(std::string_view k, bool& v, std::string_view doc) override {
    leaf(k, v ? "true" : "false", doc, "");
  }
  void text(std::string_view k, std::string& v, const TextRule&, std::string_view doc) override {
    leaf(k, yaml_string(v), doc, "");
  }
  void choice(std::string_view k, int& i, const ChoiceRule& r, std::string_view doc) override {
    std::string names;
    for (const auto& n : r.names) names += (names.empty() ? "" : " | ") + n;
    leaf(k, r.names.at(static_cast<size_t>(i)), doc, r.names.size() > 1 ? names : "");
  }
  void stages(std::string_view key, std::vector<StageSpec>& v, std::string_view doc) override {
    row(std::string(key) + ":", std::string(doc));
    for (auto& st : v) {
      indent_ += 2;
      row(std::string("- type: ") + to_string(stage_type(st)), "sft | grpo | eval");
      indent_ += 2;
      describe_stage_fields(*this, st);
      indent_ -= 4;
    }
  }

 private:
  struct Row {
    std::string text;
    std::string comment;
  };
  void row(std::string text, std::string comment) {
    rows_.push_back({std::string(static_cast<size_t>(indent_), ' ') + text, std::move(comment)});
  }
  void leaf(std::string_view key, const std::string& value, std::string_view doc,
            const std::string& allowed) {
    std::string c(doc);
    if (!allowed.empty()) c += "; " + allowed;
    row(std::string(key) + ": " + value, c);
  }
  bool comments_;
  int indent_ = 0;
  std::vector<Row> rows_;
};

}  // namespace

}  // namespace detail

std::string to_yaml(const WorkflowSpec& spec, bool comments) {
  WorkflowSpec copy = spec;  // visitors take fields by reference; the writer only reads them
  detail::YamlWriter w(comments);
  detail::describe_workflow(w, copy);
  return w.text();
}

}  // namespace siesta::workflows
