// Shared by the trainer tests: a tiny model config, a CPU pool and ops, and a trainer factory.
#pragma once

#include <memory>

#include "siesta/allocator/pool.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/model/config.hpp"
#include "siesta/train/task.hpp"
#include "siesta/train/trainer.hpp"

namespace siesta::train::testing {

// Small enough for sub-second steps on one core, with GQA and a bias-free Llama layout.
inline model::ModelConfig tiny_config() {
  model::ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 264;
  c.max_position_embeddings = 64;
  c.torch_dtype = "float32";
  return c;
}

inline TrainerOptions tiny_options() {
  TrainerOptions o;
  o.lr = {.peak_lr = 3e-3, .min_lr = 3e-4, .warmup_steps = 2, .total_steps = 20};
  o.adamw.weight_decay = 0.01f;
  o.micro_batch_rows = 4;
  o.max_seq_len = 32;
  return o;
}

struct CpuRig {
  std::unique_ptr<kernels::Ops> ops = kernels::make_cpu_ops();
  std::unique_ptr<allocator::Pool> pool = allocator::Pool::create({.device = Device::cpu()});
  std::unique_ptr<Trainer> make(const TrainerOptions& o = tiny_options(), uint64_t seed = 1) {
    auto t = std::make_unique<Trainer>(tiny_config(), o, *ops, *pool);
    t->init_random(seed);
    return t;
  }
};

inline TrainBatch sft_batch(uint64_t first, int rows) {
  Task task({.kind = TaskKind::Addition, .min_len = 1, .max_len = 2, .seed = 3});
  std::vector<TaskExample> ex;
  for (int i = 0; i < rows; ++i) ex.push_back(task.train_example(first + uint64_t(i)));
  return make_sft_batch(ex, ByteTokenizer{});
}

}  // namespace siesta::train::testing
