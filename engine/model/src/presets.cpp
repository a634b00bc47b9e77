// Preset lookup (configs/models/*.json) and randomly initialised models saved as HF folders.
#include "siesta/model/presets.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "siesta/model/folder.hpp"

namespace siesta::model {
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> preset_dirs() {
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("SIESTA_CONFIGS"); env && *env)
    dirs.push_back(fs::path(env) / "models");
#ifdef SIESTA_SOURCE_CONFIGS_DIR
  dirs.push_back(fs::path(SIESTA_SOURCE_CONFIGS_DIR) / "models");
#endif
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    dirs.push_back(exe.parent_path().parent_path() / "configs" / "models");
    dirs.push_back(exe.parent_path() / "configs" / "models");
  }
  return dirs;
}

// splitmix64 stream + Box-Muller: the same numbers on every platform and standard library.
struct NormalStream {
  uint64_t state;
  bool has_spare = false;
  double spare = 0;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
  double normal() {
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform())), t = 2.0 * M_PI * uniform();
    spare = r * std::sin(t);
    has_spare = true;
    return r * std::cos(t);
  }
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::set<std::string> names;
  for (const auto& d : preset_dirs()) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.path().extension() == ".json") names.insert(e.path().stem().string());
  }
  return {names.begin(), names.end()};
}

fs::path find_preset(const std::string& name) {
  std::string looked;
  for (const auto& d : preset_dirs()) {
    fs::path p = d / (name + ".json");
    if (fs::exists(p)) return p;
    looked += (looked.empty() ? "" : ", ") + d.string();
  }
  std::string avail;
  for (const auto& n : preset_names()) avail += (avail.empty() ? "" : ", ") + n;
  throw ModelError("no model preset named '" + name + "' (looked in: " + looked +
                   "; presets found: " + (avail.empty() ? "none" : avail) + ")");
}

ModelConfig load_preset(const std::string& name) { return ModelConfig::from_file(find_preset(name)); }

ModelConfig resolve_model_config(const std::string& folder_or_preset) {
  fs::path p(folder_or_preset);
  if (fs::is_directory(p)) return ModelConfig::from_file(p / "config.json");
  if (fs::is_regular_file(p) && ends_with(folder_or_preset, ".json"))
    return ModelConfig::from_file(p);
  return load_preset(folder_or_preset);
}

void init_random_weights(const ModelConfig& cfg, const ModelWeights& w, uint64_t seed, float std) {
  if (w.device.is_cuda())
    throw ModelError("init_random_weights fills host weights; got weights on " + w.device.str());
  NormalStream rng{seed};
  std::vector<float> buf;
  (void)cfg;
  for (const auto& t : w.tensors) {
    buf.assign(size_t(t.view.numel()), 0.f);
    const bool is_norm = t.name.find("layernorm") != std::string::npos || t.name == "model.norm.weight";
    const bool is_bias = ends_with(t.name, ".bias");
    if (is_norm) std::fill(buf.begin(), buf.end(), 1.f);
    else if (!is_bias)
      for (auto& x : buf) x = float(rng.normal() * std);
    convert_host(buf.data(), DType::F32, t.view.data, t.view.dtype, buf.size());
  }
}

void create_random_model(const ModelConfig& cfg, uint64_t seed, const fs::path& dir, DType dtype,
                         size_t max_shard_bytes) {
  cfg.validate();
  HostWeights host(cfg, dtype);
  init_random_weights(cfg, host.weights(), seed);
  save_model_folder(dir, cfg, host.weights(), max_shard_bytes);
}

}  // namespace siesta::model
