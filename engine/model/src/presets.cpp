// Preset lookup (configs/models/*.json) and randomly initialised models saved as HF folders.
#include "siesta/model/presets.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

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

// Parallel over fixed-size pieces with exactly the numbers of one sequential NormalStream:
// splitmix64 is a counter (call n sees state seed + n * golden), so normal number g of the
// stream is pair g / 2's cosine (g even) or sine (g odd) and any piece can start anywhere. A
// 7b preset (7.6e9 parameters) took minutes on one thread.
void init_random_weights(const ModelConfig& cfg, const ModelWeights& w, uint64_t seed, float std) {
  if (w.device.is_cuda())
    throw ModelError("init_random_weights fills host weights; got weights on " + w.device.str());
  (void)cfg;
  struct Piece {
    const NamedTensor* t;
    int64_t begin, end;   // elements of the tensor
    int64_t normal0;      // stream index of element `begin` (-1: a norm or a bias)
  };
  constexpr int64_t kPiece = int64_t(1) << 20;
  std::vector<Piece> pieces;
  int64_t stream = 0;
  for (const auto& t : w.tensors) {
    const bool is_norm = t.name.find("layernorm") != std::string::npos || t.name == "model.norm.weight";
    const bool is_bias = ends_with(t.name, ".bias");
    const bool random = !is_norm && !is_bias;
    const int64_t n = t.view.numel();
    for (int64_t b = 0; b < n || (b == 0 && n == 0); b += kPiece) {
      pieces.push_back({&t, b, std::min(n, b + kPiece), random ? stream + b : -1});
      if (n == 0) break;
    }
    if (random) stream += n;
  }
  auto fill = [&](const Piece& p) {
    const bool is_norm = p.normal0 < 0 && !ends_with(p.t->name, ".bias");
    std::vector<float> buf(size_t(p.end - p.begin), is_norm ? 1.f : 0.f);
    if (p.normal0 >= 0) {
      const int64_t g0 = p.normal0, g1 = p.normal0 + (p.end - p.begin);
      NormalStream rng{seed + uint64_t(g0 / 2) * 2 * 0x9E3779B97F4A7C15ull};
      for (int64_t pair = g0 / 2; 2 * pair < g1; ++pair) {
        const double r = std::sqrt(-2.0 * std::log(rng.uniform())), th = 2.0 * M_PI * rng.uniform();
        const int64_t g = 2 * pair;
        if (g >= g0) buf[size_t(g - g0)] = float(r * std::cos(th) * std);
        if (g + 1 < g1) buf[size_t(g + 1 - g0)] = float(r * std::sin(th) * std);
      }
    }
    const size_t esz = dtype_size(p.t->view.dtype);
    convert_host(buf.data(), DType::F32, static_cast<std::byte*>(p.t->view.data) + size_t(p.begin) * esz,
                 p.t->view.dtype, buf.size());
  };
  const unsigned threads =
      std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), unsigned(pieces.size())));
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < pieces.size(); i = next++) fill(pieces[i]);
  };
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
}

void create_random_model(const ModelConfig& cfg, uint64_t seed, const fs::path& dir, DType dtype,
                         size_t max_shard_bytes) {
  cfg.validate();
  HostWeights host(cfg, dtype);
  init_random_weights(cfg, host.weights(), seed);
  save_model_folder(dir, cfg, host.weights(), max_shard_bytes);
}

}  // namespace siesta::model
