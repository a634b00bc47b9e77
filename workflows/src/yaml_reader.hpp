// Reads a YAML tree into a WorkflowSpec through the schema, collecting every error (unknown
// keys with suggestions, wrong types, out-of-range values) instead of stopping at the first.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "schema.hpp"
#include "siesta/workflows/diagnostics.hpp"

namespace siesta::workflows::detail {

struct Location {
  std::string origin;
  int line = 0;
  int column = 0;
  int source_index = 0;
};

// Where each key path ("trainer.lr", "algorithm.stages[1].steps") was last set.
using LocationMap = std::map<std::string, Location>;

class YamlReader final : public SchemaVisitor {
 public:
  // use_marks: positions come from node marks (a file); otherwise every diagnostic names
  // `origin` alone (a --set override, whose text is the origin).
  YamlReader(std::string origin, bool use_marks, int source_index, std::vector<Diagnostic>& out,
             LocationMap& locations);

  // Sets only the fields present in `root`; the rest of `spec` is left as it was.
  void read(const YAML::Node& root, WorkflowSpec& spec);

  void section(std::string_view key, std::string_view doc, const std::function<void()>& body) override;
  void integer(std::string_view key, int64_t& v, const IntRule& r, std::string_view doc) override;
  void real(std::string_view key, double& v, const RealRule& r, std::string_view doc) override;
  void real_pair(std::string_view key, std::array<double, 2>& v, const RealRule& r,
                 std::string_view doc) override;
  void optional_real(std::string_view key, std::optional<double>& v, const RealRule& r,
                     std::string_view doc) override;
  void optional_bytes(std::string_view key, std::optional<uint64_t>& v, const BytesRule& r,
                      std::string_view doc) override;
  void boolean(std::string_view key, bool& v, std::string_view doc) override;
  void text(std::string_view key, std::string& v, const TextRule& r, std::string_view doc) override;
  void choice(std::string_view key, int& index, const ChoiceRule& r, std::string_view doc) override;
  void stages(std::string_view key, std::vector<StageSpec>& v, std::string_view doc) override;

 private:
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
    bool used = false;
  };
  struct Frame {
    std::string path;
    std::vector<Entry> entries;
    std::vector<std::string> known;  // keys the schema asked for, for suggestions
    bool is_stage = false;
    std::string stage_type;
  };

  // Enters a mapping node; false (with an error) when the node is not a mapping.
  bool push(const YAML::Node& node, std::string path, bool is_stage = false,
            std::string stage_type = "");
  void pop();  // reports the keys nobody asked for
  // The value under `key` in the current mapping, or nullptr; records its location.
  const Entry* take(std::string_view key);
  std::string child_path(std::string_view key) const;
  void error(const YAML::Node& at, const std::string& path, const std::string& message,
             const std::string& allowed);
  void read_stage(const YAML::Node& node, const std::string& path, StageSpec* existing,
                  std::vector<StageSpec>& out);
  // A scalar that may be null; false (with an error) for lists and mappings.
  bool scalar(const Entry& e, const std::string& what, const std::string& allowed);

  std::string origin_;
  bool use_marks_;
  int source_index_;
  std::vector<Diagnostic>& out_;
  LocationMap& locations_;
  std::vector<Frame> stack_;
};

}  // namespace siesta::workflows::detail
