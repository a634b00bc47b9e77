#include "runner_options.hpp"

#include <unistd.h>

#include "siesta/kernels/device.hpp"
#include "siesta/model/presets.hpp"
#include "siesta/workflows/diagnostics.hpp"
#include "siesta/workflows/load.hpp"

namespace siesta::workflows {

siesta::Device pick_device(const WorkflowSpec& s) {
  const bool gpu = kernels::cuda_available();
  if (s.devices.device == Device::Cuda && !gpu)
    throw WorkflowError(
        "devices.device is cuda, but no CUDA device is visible (`siesta doctor` says why); "
        "use devices.device: cpu or auto");
  if (s.devices.device == Device::Cpu || !gpu) return siesta::Device::cpu();
  return siesta::Device::cuda(0);
}

actors::WorkerOptions worker_options(const WorkflowSpec& s, siesta::Device device, int rank) {
  actors::WorkerOptions w;
  w.rank = rank;
  w.model = s.model;
  w.device = device;
  w.task = task_spec_of(s);
  w.seed = uint64_t(s.seeds.global);
  w.host_trainer = rank == 0;
  const int seq = longest_sequence_tokens(s);
  if (seq > s.engine.max_model_len)
    throw WorkflowError("engine.max_model_len " + std::to_string(s.engine.max_model_len) +
                        " is shorter than the task's longest sequence (" + std::to_string(seq) +
                        " tokens: prompt, answer and markers); raise engine.max_model_len to at "
                        "least " + std::to_string(seq));

  auto& e = w.engine;
  e.max_num_seqs = s.engine.max_batch;
  e.block_size = s.engine.block_size;
  e.max_model_len = s.engine.max_model_len;
  e.enable_cuda_graphs = s.engine.cuda_graphs;
  e.async_scheduling = s.engine.async_scheduling;
  e.seed = uint64_t(s.seeds.global);
  if (s.engine.kv_cache_bytes) {
    e.kv_cache_bytes = *s.engine.kv_cache_bytes;
  } else if (s.engine.gpu_memory_utilization) {
    e.kv_cache_memory_fraction = *s.engine.gpu_memory_utilization;
  } else {
    // Room for max_batch sequences of max_model_len tokens (K and V of every layer).
    auto cfg = model::resolve_model_config(s.model);
    const uint64_t elem = device.is_cuda() ? 2 : 4;
    const uint64_t per_token = 2ull * uint64_t(cfg.num_hidden_layers) *
                               uint64_t(cfg.num_key_value_heads) * uint64_t(cfg.head_dim > 0 ? cfg.head_dim : cfg.hidden_size / cfg.num_attention_heads) * elem;
    const uint64_t blocks_per_seq =
        (uint64_t(s.engine.max_model_len) + uint64_t(s.engine.block_size) - 1) /
        uint64_t(s.engine.block_size);
    e.kv_cache_bytes = uint64_t(s.engine.max_batch) * blocks_per_seq *
                       uint64_t(s.engine.block_size) * per_token;
  }

  auto& t = w.trainer;
  t.adamw.beta1 = float(s.trainer.betas[0]);
  t.adamw.beta2 = float(s.trainer.betas[1]);
  t.adamw.eps = float(s.trainer.eps);
  t.adamw.weight_decay = float(s.trainer.weight_decay);
  t.max_grad_norm = s.trainer.grad_clip;
  t.max_seq_len = seq;
  int rows = s.trainer.micro_batch;
  t.micro_batch_rows = rows;
  t.lr = train::LrSchedule{s.trainer.lr, s.trainer.lr, 0, 0};
  return w;
}

RankInfo local_rank_info(int rank, siesta::Device device, actors::LocalWorker& w) {
  auto m = w.pool().device_memory();
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '?';
  return RankInfo{rank, device.str(), host, int(::getpid()), m.total_bytes, m.free_bytes};
}

boost::json::object trace_header(const WorkflowSpec& spec, const std::vector<RankInfo>& ranks) {
  namespace json = boost::json;
  json::array devices;
  for (const auto& r : ranks)
    devices.push_back(json::object{{"rank", r.rank},
                                   {"device", r.device},
                                   {"budget_bytes", r.budget_bytes},
                                   {"free_bytes", r.free_bytes}});
  return json::object{{"workflow", spec.name},
                      {"config", to_yaml(spec, false)},
                      {"seeds", json::object{{"global", spec.seeds.global}, {"data", spec.seeds.data}}},
                      {"devices", devices}};
}

}  // namespace siesta::workflows
