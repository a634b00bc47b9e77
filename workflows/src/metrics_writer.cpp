// JSON Lines metrics, flushed per line.
#include "siesta/workflows/metrics_writer.hpp"

#include <chrono>
#include <fstream>

#include "siesta/workflows/diagnostics.hpp"

namespace siesta::workflows {

MetricsWriter::MetricsWriter(const std::filesystem::path& file) : path_(file) {
  std::error_code ec;
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);
  file_ = std::fopen(file.c_str(), "a");
  if (!file_)
    throw WorkflowError(file.string() + ": cannot open the metrics file for appending" +
                        (ec ? " (" + ec.message() + ")" : ""));
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

void MetricsWriter::write(std::string_view event, const boost::json::object& fields) {
  const double now = std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
  boost::json::object line;
  line["event"] = event;
  line["time"] = now;
  for (const auto& kv : fields) line[kv.key()] = kv.value();
  std::string text = boost::json::serialize(line);
  text += '\n';
  std::lock_guard lock(mu_);
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0)
    throw WorkflowError(path_.string() + ": writing metrics failed (disk full?)");
}

void MetricsWriter::write_eval(const EvalPoint& e, const boost::json::object& extra) {
  boost::json::object o = e.to_json();
  for (const auto& kv : extra) o[kv.key()] = kv.value();
  write("eval", o);
}

std::vector<boost::json::object> read_metrics(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw WorkflowError(file.string() + ": cannot open the metrics file");
  std::vector<boost::json::object> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    if (!ec && v.is_object()) out.push_back(std::move(v.as_object()));
  }
  return out;
}

}  // namespace siesta::workflows
