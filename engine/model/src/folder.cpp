// HF model folders: config.json + model.safetensors or shards with model.safetensors.index.json.
#include "siesta/model/folder.hpp"

#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "siesta/model/atomic_file.hpp"

namespace siesta::model {
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kIndex = "model.safetensors.index.json";
constexpr const char* kSingle = "model.safetensors";

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  if (!f) throw ModelError("cannot open '" + p.string() + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const char* torch_dtype_of(DType t) {
  switch (t) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: return "float32";
  }
}

bool is_floating(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

}  // namespace

const SafetensorsEntry& ModelFolder::tensor(std::string_view name) const {
  auto specs = parameter_specs(cfg_);
  for (size_t i = 0; i < specs.size(); ++i)
    if (specs[i].name == name) return *by_spec_[i];
  throw ModelError("'" + std::string(name) + "' is not a parameter of the model in '" +
                   dir_.string() + "'");
}

ModelFolder load_model_folder(const fs::path& dir) {
  ModelFolder m;
  m.dir_ = dir;
  m.cfg_ = ModelConfig::from_file(dir / "config.json");

  // Which files to open, and (with an index) which file each tensor must come from.
  std::map<std::string, std::string> weight_map;
  std::vector<std::string> file_names;
  if (fs::exists(dir / kIndex)) {
    const std::string origin = (dir / kIndex).string();
    boost::system::error_code ec;
    json::value v = json::parse(read_text(dir / kIndex), ec);
    if (ec || !v.is_object() || !v.as_object().contains("weight_map") ||
        !v.as_object().at("weight_map").is_object())
      throw ModelError(origin + ": expected a JSON object with a \"weight_map\" object");
    std::set<std::string> seen;
    for (const auto& [name, file] : v.as_object().at("weight_map").as_object()) {
      if (!file.is_string())
        throw ModelError(origin + ": weight_map entry of tensor '" + std::string(name) +
                         "' is not a file name");
      std::string fname(file.as_string());
      if (fname.find('/') != std::string::npos)
        throw ModelError(origin + ": tensor '" + std::string(name) + "' maps to '" + fname +
                         "', which is not a file name inside the folder");
      weight_map[std::string(name)] = fname;
      if (seen.insert(fname).second) file_names.push_back(fname);
    }
  } else if (fs::exists(dir / kSingle)) {
    file_names.push_back(kSingle);
  } else {
    throw ModelError("model folder '" + dir.string() + "' has neither " + kSingle + " nor " +
                     kIndex);
  }
  for (const auto& f : file_names) m.files_.push_back(SafetensorsFile::open(dir / f));

  // Every tensor in the files, by name; a name in two files is an error.
  std::map<std::string, std::pair<const SafetensorsEntry*, const SafetensorsFile*>> all;
  for (const auto& f : m.files_)
    for (const auto& t : f.tensors()) {
      auto [it, fresh] = all.emplace(t.name, std::pair{&t, &f});
      if (!fresh)
        throw ModelError("tensor '" + t.name + "' appears in both '" +
                         it->second.second->path().string() + "' and '" + f.path().string() + "'");
      if (!weight_map.empty()) {
        auto w = weight_map.find(t.name);
        if (w == weight_map.end() || w->second != f.path().filename().string())
          throw ModelError("tensor '" + t.name + "' is in '" + f.path().string() +
                           "' but the index " +
                           (w == weight_map.end() ? "does not list it"
                                                  : "maps it to '" + w->second + "'"));
      }
    }

  std::set<std::string> expected;
  for (const auto& spec : parameter_specs(m.cfg_)) {
    expected.insert(spec.name);
    auto it = all.find(spec.name);
    if (it == all.end())
      throw ModelError("model folder '" + dir.string() + "': missing tensor '" + spec.name +
                       "' (expected " + shape_str(spec.shape) + ")");
    const SafetensorsEntry& e = *it->second.first;
    if (e.shape != spec.shape)
      throw ModelError("tensor '" + spec.name + "' in '" + it->second.second->path().string() +
                       "' has shape " + shape_str(e.shape) + ", the config needs " +
                       shape_str(spec.shape));
    if (!is_floating(e.dtype))
      throw ModelError("tensor '" + spec.name + "' in '" + it->second.second->path().string() +
                       "' has dtype " + std::string(dtype_name(e.dtype)) +
                       " (allowed: F32, BF16, F16)");
    m.by_spec_.push_back(&e);
  }
  for (const auto& [name, where] : all)
    if (!expected.count(name))
      throw ModelError("model folder '" + dir.string() + "': unexpected tensor '" + name +
                       "' in '" + where.second->path().string() + "' (not a parameter of " +
                       m.cfg_.architecture + " with this config)");
  for (const auto& [name, file] : weight_map)
    if (!all.count(name))
      throw ModelError("the index lists tensor '" + name + "' in '" + file +
                       "' but that file does not contain it");
  return m;
}

void ModelFolder::load_into(const ModelWeights& dst, kernels::Ops& ops) const {
  auto specs = parameter_specs(cfg_);
  if (dst.tensors.size() != specs.size())
    throw ModelError("load_into: destination is bound for " + std::to_string(dst.tensors.size()) +
                     " tensors, the model in '" + dir_.string() + "' has " +
                     std::to_string(specs.size()));
  std::vector<std::byte> staging;
  for (size_t i = 0; i < specs.size(); ++i) {
    const SafetensorsEntry& e = *by_spec_[i];
    const TensorView& v = dst.tensors[i].view;
    if (v.shape != e.shape)
      throw ModelError("load_into: destination tensor '" + dst.tensors[i].name + "' is " +
                       shape_str(v.shape) + ", the file holds " + shape_str(e.shape));
    if (e.dtype == v.dtype) {
      ops.copy_to_device(v.data, e.data, e.bytes);
    } else {
      ops.synchronize();  // the previous tensor's copy may still read the staging buffer
      staging.resize(v.bytes());
      convert_host(e.data, e.dtype, staging.data(), v.dtype, size_t(v.numel()));
      ops.copy_to_device(v.data, staging.data(), v.bytes());
    }
  }
  ops.synchronize();
}

void save_model_folder(const fs::path& dir, const ModelConfig& cfg, const ModelWeights& w,
                       size_t max_shard_bytes, kernels::Ops* ops) {
  fs::create_directories(dir);
  // Host bytes of the whole buffer (the buffer itself when it already lives on the host).
  std::vector<std::byte> host;
  const std::byte* base = static_cast<const std::byte*>(w.base);
  if (w.device.is_cuda()) {
    if (!ops) throw ModelError("save_model_folder: weights live on " + w.device.str() +
                               "; pass the Ops of that device to read them back");
    host.resize(w.bytes);
    ops->copy_to_host(host.data(), w.base, w.bytes);
    ops->synchronize();
    base = host.data();
  }
  auto specs = parameter_specs(cfg);
  if (w.tensors.size() != specs.size())
    throw ModelError("save_model_folder: weights are bound for " +
                     std::to_string(w.tensors.size()) + " tensors, the config has " +
                     std::to_string(specs.size()));
  std::vector<std::vector<std::pair<std::string, TensorView>>> shards(1);
  size_t shard_bytes = 0, total = 0;
  for (const auto& t : w.tensors) {
    TensorView hv = t.view;
    hv.data = const_cast<std::byte*>(base) + size_t(t.offset_elems) * dtype_size(w.dtype);
    hv.device = Device::cpu();
    if (max_shard_bytes > 0 && shard_bytes > 0 && shard_bytes + hv.bytes() > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().emplace_back(t.name, hv);
    shard_bytes += hv.bytes();
    total += hv.bytes();
  }
  // Remove what a previous save left, so the loader cannot pick up stale files.
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string n = entry.path().filename().string();
    if (n == kIndex || (n.rfind("model", 0) == 0 && entry.path().extension() == ".safetensors"))
      fs::remove(entry.path());
  }
  const std::map<std::string, std::string> meta{{"format", "pt"}};
  if (shards.size() == 1) {
    write_safetensors(dir / kSingle, shards[0], meta);
  } else {
    json::object weight_map;
    for (size_t i = 0; i < shards.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      write_safetensors(dir / name, shards[i], meta);
      for (const auto& [tn, tv] : shards[i]) weight_map[tn] = name;
    }
    json::object index{{"metadata", json::object{{"total_size", total}}},
                       {"weight_map", std::move(weight_map)}};
    replace_file_atomically(dir / kIndex, json::serialize(index));
  }
  ModelConfig c = cfg;
  c.torch_dtype = torch_dtype_of(w.dtype);
  replace_file_atomically(dir / "config.json", c.to_json_text());
}

}  // namespace siesta::model
