// Sleep mode (vLLM semantics, see engine.hpp) and in-place weight updates.
#include <algorithm>
#include <map>

#include "engine_impl.hpp"
#include "siesta/allocator/error.hpp"
#include "siesta/model/folder.hpp"

namespace siesta::infer {
namespace {

bool is_floating(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

[[noreturn]] void rethrow_oom(const std::string& what, const allocator::AllocatorError& e) {
  throw InferError(ErrorKind::OutOfMemory,
                   what + " failed: " + e.what() +
                       "; the engine stays asleep and the wake can be retried once memory is "
                       "free");
}

}  // namespace

void InferenceEngine::Impl::do_sleep(int level, SleepPolicy policy) {
  if (level != 1 && level != 2)
    throw InferError(ErrorKind::InvalidArgument,
                     "sleep level " + std::to_string(level) + " is not allowed (allowed: 1, 2)");
  if (sleep.is_sleeping()) return;   // vLLM: a warning and nothing else
  if (!requests.empty()) {
    if (policy == SleepPolicy::Drain) {
      draining = true;   // add_request refuses new work meanwhile
      try {
        while (!requests.empty()) step();
      } catch (...) {
        draining = false;
        throw;
      }
      draining = false;
    } else {
      std::vector<RequestId> ids;
      for (const auto& [id, r] : requests) ids.push_back(id);
      for (RequestId id : ids) abort(id, "engine sleep (level " + std::to_string(level) + ")");
    }
  }
  settle();   // a step queued ahead (async scheduling) still reads the weights and KV cache
  ops->synchronize();
  try {
    if (level == 1) {
      pool->sleep({kTagWeights, kTagBuffers}, allocator::SleepMode::Offload);
    } else {
      pool->sleep({kTagBuffers}, allocator::SleepMode::Offload);
      pool->sleep({kTagWeights}, allocator::SleepMode::Discard);
    }
  } catch (const allocator::AllocatorError& e) {
    // Weights (level 1: their host backup) could not be put to sleep: still fully awake.
    for (const char* t : {kTagBuffers, kTagWeights})
      if (pool->is_sleeping(t)) pool->wake({t});
    throw InferError(ErrorKind::OutOfMemory, std::string("sleep(level=") +
                                                 std::to_string(level) + ") failed: " + e.what());
  }
  sleep.weights_awake = false;
  sleep.level = level;
  if (level == 2) {
    sleep.weights_valid = false;
    written_since_wake.clear();
  }
  pool->sleep({kTagKv, kTagWorkspace}, allocator::SleepMode::Discard);
  sleep.kv_cache_awake = false;
  blocks->reset();
}

void InferenceEngine::Impl::do_wake(const std::vector<std::string>& tags_in) {
  bool want_weights = tags_in.empty(), want_kv = tags_in.empty();
  for (const auto& t : tags_in) {
    if (t == kTagWeights) want_weights = true;
    else if (t == kTagKv) want_kv = true;
    else
      throw InferError(ErrorKind::InvalidArgument,
                       "wake_up tag '" + t + "' is not allowed (allowed: weights, kv_cache)");
  }
  if (want_weights && !sleep.weights_awake) {
    try {
      pool->wake({kTagBuffers});
    } catch (const allocator::AllocatorError& e) {
      rethrow_oom("wake_up(weights)", e);
    }
    try {
      pool->wake({kTagWeights});
    } catch (const allocator::AllocatorError& e) {
      pool->sleep({kTagBuffers}, allocator::SleepMode::Offload);
      rethrow_oom("wake_up(weights)", e);
    }
    sleep.weights_awake = true;
  }
  if (want_kv && !sleep.kv_cache_awake) {
    try {
      pool->wake({kTagKv});
    } catch (const allocator::AllocatorError& e) {
      rethrow_oom("wake_up(kv_cache)", e);
    }
    try {
      pool->wake({kTagWorkspace});
    } catch (const allocator::AllocatorError& e) {
      pool->sleep({kTagKv}, allocator::SleepMode::Discard);
      rethrow_oom("wake_up(kv_cache)", e);
    }
    blocks->reset();   // the cache's content is gone: no block holds anything
    sleep.kv_cache_awake = true;
  }
  if (!sleep.is_sleeping()) sleep.level = 0;
}

void InferenceEngine::Impl::do_update_weights(const std::vector<WeightUpdate>& tensors) {
  if (!sleep.weights_awake)
    throw InferError(ErrorKind::Sleeping,
                     "update_weights needs the weights awake; call wake_up({\"weights\"}) first");
  // The steps queued ahead (async scheduling) finish on the weights they were launched with.
  settle();
  std::map<std::string, const model::NamedTensor*> by_name;
  for (const auto& t : weights.named()) by_name[t.name] = &t;
  std::set<std::string> seen;
  // Validate everything before writing anything: a bad update leaves the weights untouched.
  for (const auto& [name, v] : tensors) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      std::string some;
      for (size_t i = 0; i < std::min<size_t>(3, weights.named().size()); ++i)
        some += (i ? ", " : "") + weights.named()[i].name;
      throw InferError(ErrorKind::InvalidArgument,
                       "update_weights: '" + name + "' is not a parameter of this model (" +
                           std::to_string(weights.named().size()) + " parameters, e.g. " + some +
                           (cfg.tie_word_embeddings ? "; lm_head is tied to embed_tokens" : "") +
                           ")");
    }
    if (!seen.insert(name).second)
      throw InferError(ErrorKind::InvalidArgument,
                       "update_weights: '" + name + "' is given more than once");
    const TensorView& dst = it->second->view;
    if (v.shape != dst.shape)
      throw InferError(ErrorKind::InvalidArgument,
                       "update_weights: '" + name + "' has shape " + shape_str(v.shape) +
                           ", the parameter is " + shape_str(dst.shape));
    if (!is_floating(v.dtype))
      throw InferError(ErrorKind::InvalidArgument,
                       "update_weights: '" + name + "' has dtype " +
                           std::string(dtype_name(v.dtype)) +
                           " (allowed: F32, BF16, F16; stored as " +
                           std::string(dtype_name(dtype)) + ")");
    if (!v.data && v.numel() > 0)
      throw InferError(ErrorKind::InvalidArgument, "update_weights: '" + name + "' has no data");
    if (v.device.is_cuda() && !(v.device == opt.device))
      throw InferError(ErrorKind::InvalidArgument,
                       "update_weights: '" + name + "' lives on " + v.device.str() +
                           " (allowed: host memory or the engine's device " + opt.device.str() +
                           ")");
  }
  std::vector<std::byte> staging;
  for (const auto& [name, v] : tensors) {
    const TensorView& dst = by_name.at(name)->view;
    bool on_device = v.device.is_cuda();   // validated above: the engine's device
    if (v.dtype == dst.dtype) {
      if (on_device) ops->copy_on_device(dst.data, v.data, dst.bytes());
      else ops->copy_to_device(dst.data, v.data, dst.bytes());
    } else if (on_device) {
      ops->convert(dst.data, dst.dtype, v.data, v.dtype, dst.numel());
    } else {
      staging.resize(dst.bytes());
      convert_host(v.data, v.dtype, staging.data(), dst.dtype, size_t(dst.numel()));
      ops->copy_to_device(dst.data, staging.data(), dst.bytes());
      ops->synchronize();   // staging is reused by the next tensor
    }
    written_since_wake.insert(name);
  }
  ops->synchronize();
  if (!sleep.weights_valid && written_since_wake.size() == weights.named().size())
    sleep.weights_valid = true;
}

void InferenceEngine::Impl::do_load_weights(const std::filesystem::path& folder) {
  if (!sleep.weights_awake)
    throw InferError(ErrorKind::Sleeping,
                     "load_weights needs the weights awake; call wake_up({\"weights\"}) first");
  // The steps queued ahead (async scheduling) finish on the weights they were launched with.
  settle();
  model::ModelFolder f = [&] {
    try {
      return model::load_model_folder(folder);
    } catch (const model::ModelError& e) {
      throw InferError(ErrorKind::InvalidArgument, std::string("load_weights: ") + e.what());
    }
  }();
  auto mine = model::parameter_specs(cfg), theirs = model::parameter_specs(f.config());
  for (size_t i = 0; i < std::max(mine.size(), theirs.size()); ++i) {
    bool same = i < mine.size() && i < theirs.size() && mine[i].name == theirs[i].name &&
                mine[i].shape == theirs[i].shape;
    if (!same)
      throw InferError(
          ErrorKind::InvalidArgument,
          "load_weights: '" + folder.string() + "' holds a different model: parameter " +
              std::to_string(i) + " is " +
              (i < theirs.size() ? theirs[i].name + " " + shape_str(theirs[i].shape) : "absent") +
              ", this engine has " +
              (i < mine.size() ? mine[i].name + " " + shape_str(mine[i].shape) : "none"));
  }
  f.load_into(weights, *ops);
  ops->synchronize();
  for (const auto& t : weights.named()) written_since_wake.insert(t.name);
  sleep.weights_valid = true;
}

// ---- public surface ------------------------------------------------------------------------

void InferenceEngine::sleep(int level, SleepPolicy policy) { impl_->do_sleep(level, policy); }
void InferenceEngine::wake_up(const std::vector<std::string>& tags) { impl_->do_wake(tags); }

bool InferenceEngine::reset_prefix_cache() {
  if (!impl_->requests.empty() || !impl_->sleep.kv_cache_awake) return false;
  impl_->settle();   // a step queued ahead for requests that have since ended
  impl_->blocks->reset();
  return true;
}

void InferenceEngine::update_weights(const std::vector<WeightUpdate>& tensors) {
  impl_->do_update_weights(tensors);
}

void InferenceEngine::load_weights(const std::filesystem::path& folder) {
  impl_->do_load_weights(folder);
}

std::vector<WeightInfo> InferenceEngine::weight_infos() const {
  std::vector<WeightInfo> out;
  for (const auto& t : impl_->weights.named()) out.push_back({t.name, t.view.shape, t.view.dtype});
  return out;
}

std::vector<WeightUpdate> InferenceEngine::weight_destinations() {
  if (!impl_->sleep.weights_awake)
    throw InferError(ErrorKind::Sleeping,
                     "weight_destinations needs the weights awake; call wake_up({\"weights\"}) first");
  // The writer uses its own stream: no step queued ahead may still be reading the weights.
  impl_->settle();
  impl_->ops->synchronize();
  std::vector<WeightUpdate> out;
  for (const auto& t : impl_->weights.named()) out.emplace_back(t.name, t.view);
  return out;
}

void InferenceEngine::weights_received() {
  if (!impl_->sleep.weights_awake)
    throw InferError(ErrorKind::Sleeping, "weights_received: the weights are asleep");
  impl_->ops->synchronize();
  for (const auto& t : impl_->weights.named()) impl_->written_since_wake.insert(t.name);
  impl_->sleep.weights_valid = true;
}

std::vector<std::byte> InferenceEngine::read_weight(const std::string& name) const {
  if (!impl_->sleep.weights_awake)
    throw InferError(ErrorKind::Sleeping, "read_weight needs the weights awake");
  for (const auto& t : impl_->weights.named())
    if (t.name == name) {
      std::vector<std::byte> out(t.view.bytes());
      impl_->ops->copy_to_host(out.data(), t.view.data, out.size());
      impl_->ops->synchronize();
      return out;
    }
  throw InferError(ErrorKind::InvalidArgument, "read_weight: '" + name + "' is not a parameter");
}

}  // namespace siesta::infer
