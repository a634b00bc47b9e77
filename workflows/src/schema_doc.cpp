// The README's workflow reference, generated from the schema so that it cannot drift.
#include <sstream>

#include "scalars.hpp"
#include "schema.hpp"
#include "siesta/workflows/load.hpp"

namespace siesta::workflows {

namespace detail {

namespace {

std::string cell(std::string s) {
  std::string out;
  for (char c : s) out += (c == '|') ? std::string("\\|") : std::string(1, c);
  return out;
}

class DocWriter final : public SchemaVisitor {
 public:
  std::ostringstream main;
  std::ostringstream stage_tables;

  void section(std::string_view key, std::string_view doc, const std::function<void()>& body) override {
    prefix_.push_back(std::string(key));
    row(*out_, "", "section", "", "", doc);
    body();
    prefix_.pop_back();
  }
  void integer(std::string_view k, int64_t& v, const IntRule& r, std::string_view doc) override {
    std::string allowed = r.allowed();
    if (allowed == "0.." + std::to_string(INT64_MAX)) allowed = ">= 0";
    row(*out_, k, "integer", std::to_string(v), allowed, doc);
  }
  void real(std::string_view k, double& v, const RealRule& r, std::string_view doc) override {
    row(*out_, k, "number", format_real(v), r.allowed(), doc);
  }
  void real_pair(std::string_view k, std::array<double, 2>& v, const RealRule& r,
                 std::string_view doc) override {
    row(*out_, k, "[number, number]", "[" + format_real(v[0]) + ", " + format_real(v[1]) + "]",
        "each " + r.allowed(), doc);
  }
  void optional_real(std::string_view k, std::optional<double>& v, const RealRule& r,
                     std::string_view doc) override {
    row(*out_, k, "number or null", v ? format_real(*v) : "null", r.allowed(), doc);
  }
  void optional_bytes(std::string_view k, std::optional<uint64_t>& v, const BytesRule& r,
                      std::string_view doc) override {
    row(*out_, k, "bytes or null", v ? format_bytes(*v) : "null", r.allowed(), doc);
  }
  void boolean(std::string_view k, bool& v, std::string_view doc) override {
    row(*out_, k, "bool", v ? "true" : "false", "true, false", doc);
  }
  void text(std::string_view k, std::string& v, const TextRule& r, std::string_view doc) override {
    row(*out_, k, "string", v, r.allowed, doc);
  }
  void choice(std::string_view k, int& i, const ChoiceRule& r, std::string_view doc) override {
    row(*out_, k, "one of", r.names.at(static_cast<size_t>(i)), r.allowed(), doc);
  }
  void stages(std::string_view key, std::vector<StageSpec>& v, std::string_view doc) override {
    std::string path = joined(key);
    std::string defaults;
    for (const auto& st : v)
      defaults += (defaults.empty() ? "" : ", ") + std::string(to_string(stage_type(st))) + " " +
                  std::to_string(stage_steps(st));
    row(*out_, key, "list of stages", defaults, "at least one stage", doc);
    for (auto t : {StageType::Sft, StageType::Grpo, StageType::Eval}) {
      stage_tables << "\n`" << path << "[]` with `type: " << to_string(t) << "`:\n\n"
                   << "| key | type | default | allowed | meaning |\n"
                   << "| --- | --- | --- | --- | --- |\n";
      std::ostringstream* saved = out_;
      out_ = &stage_tables;
      std::vector<std::string> saved_prefix = std::move(prefix_);
      prefix_.clear();
      row(stage_tables, "type", "one of", to_string(t), stage_type_rule().allowed(), kStageTypeDoc);
      StageSpec st = default_stage(t);
      describe_stage_fields(*this, st);
      prefix_ = std::move(saved_prefix);
      out_ = saved;
    }
  }

 private:
  std::string joined(std::string_view k) const {
    std::string p;
    for (const auto& s : prefix_) p += (p.empty() ? "" : ".") + s;
    if (!k.empty()) p += (p.empty() ? "" : ".") + std::string(k);
    return p;
  }
  void row(std::ostringstream& os, std::string_view key, const std::string& type,
           const std::string& def, const std::string& allowed, std::string_view doc) {
    os << "| `" << joined(key) << "` | " << type << " | " << (def.empty() ? "" : "`" + cell(def) + "`")
       << " | " << cell(allowed) << " | " << cell(std::string(doc)) << " |\n";
  }
  std::ostringstream* out_ = &main;
  std::vector<std::string> prefix_;
};

}  // namespace

}  // namespace detail

std::string schema_reference_markdown() {
  detail::DocWriter d;
  d.main << "| key | type | default | allowed | meaning |\n| --- | --- | --- | --- | --- |\n";
  WorkflowSpec defaults;
  detail::describe_workflow(d, defaults);
  return d.main.str() + d.stage_tables.str();
}

}  // namespace siesta::workflows
