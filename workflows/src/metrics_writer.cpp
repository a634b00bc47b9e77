// JSON Lines metrics, flushed per line.
#include "siesta/workflows/metrics_writer.hpp"

#include <chrono>
#include <fstream>

#include "siesta/workflows/diagnostics.hpp"

namespace siesta::workflows {

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 (overlong forms, surrogates and code points
// above U+10FFFF are invalid).
size_t utf8_sequence(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && b(i + 1) < 0xA0) return 0;  // overlong
  if (c == 0xED && b(i + 1) > 0x9F) return 0;  // surrogate
  if (c == 0xF0 && b(i + 1) < 0x90) return 0;  // overlong
  if (c == 0xF4 && b(i + 1) > 0x8F) return 0;  // above U+10FFFF
  return n;
}

// JSON text must be UTF-8, but completions of a byte-level model are arbitrary bytes: each
// invalid byte becomes U+FFFD, as Python's errors="replace" would show it.
void make_utf8(boost::json::value& v) {
  if (v.is_string()) {
    std::string_view s = v.get_string();
    std::string out;
    bool changed = false;
    for (size_t i = 0; i < s.size();) {
      size_t n = utf8_sequence(s, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD";
        changed = true;
        ++i;
      } else {
        out.append(s.substr(i, n));
        i += n;
      }
    }
    if (changed) v = out;
  } else if (v.is_array()) {
    for (auto& x : v.get_array()) make_utf8(x);
  } else if (v.is_object()) {
    for (auto& kv : v.get_object()) make_utf8(kv.value());
  }
}

}  // namespace

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
  boost::json::value v(std::move(line));
  make_utf8(v);
  std::string text = boost::json::serialize(v);
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
