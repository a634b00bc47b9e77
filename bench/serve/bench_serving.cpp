// Serving throughput of the InferenceEngine (driven directly, no HTTP) against the memory
// roofline measured in the same run.
//
// For each batch size B (default 1, 16, 64, 256): B requests of random prompt tokens, all
// sampled (temperature 1, per-request seeds, ignore_eos) to exactly --output-len tokens. Per
// batch it reports:
//   serve_tok_s   output tokens / wall time from add_request to the last output (with prefill)
//   tpot_ms       time per output token in the decode phase (after every prompt is prefilled)
//   achieved      decode tokens/s
//   limit         decode tokens/s the memory bandwidth allows: each decode step must read the
//                 weights (minus the input embedding rows not gathered when it is not tied to
//                 the lm_head) and the K/V of every cached token of every sequence; the time
//                 for those bytes at the device-to-device copy bandwidth measured below is the
//                 roofline step time.
//   ratio         achieved / limit (= roofline time / measured time)
// Bandwidth limit: a copy of >= 1 GiB between two buffers of the device (cudaMemcpy D2D
// through Ops::copy_on_device on a GPU, memcpy on the CPU), counted as read + write bytes per
// second, i.e. the HBM (or DRAM) traffic it sustains, median of the harness's repeats.
//
// Defaults: the 0.5b preset on cuda:0 (prompt 128, output 128); without a usable GPU, or with
// --quick, the tiny preset on the CPU (prompt 32, output 32).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "siesta/allocator/pool.hpp"
#include "siesta/infer/engine.hpp"
#include "siesta/kernels/device.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/model/inference.hpp"
#include "siesta/model/presets.hpp"
#include "siesta/model/weights.hpp"

using namespace siesta;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string preset;
  std::string device;              // "cpu", "cuda", "cuda:N"; empty = cuda:0 when usable
  std::vector<int> batches = {1, 16, 64, 256};
  int prompt_len = 0, output_len = 0;   // 0 = per-device default
  uint64_t copy_bytes = 1ull << 30;
  uint64_t seed = 1;
};

[[noreturn]] void usage(const std::string& msg) {
  std::cerr << "bench_serving: " << msg
            << " (options: --preset NAME|DIR --device cpu|cuda|cuda:N --batches 1,16,64,256 "
               "--prompt-len N --output-len N --copy-mib N --seed N, plus the harness's "
               "--warmup N --repeats N --quick --jsonl FILE)\n";
  std::exit(2);
}

int positive(const std::string& flag, const std::string& v) {
  try {
    size_t used = 0;
    long long n = std::stoll(v, &used);
    if (used == v.size() && n >= 1 && n <= (1 << 20)) return int(n);
  } catch (...) {
  }
  usage(flag + " takes an integer in [1, 1048576], got '" + v + "'");
}

Args parse(const bench::Options& o) {
  Args a;
  for (size_t i = 0; i < o.rest.size(); ++i) {
    const std::string& k = o.rest[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= o.rest.size()) usage(k + " needs a value");
      return o.rest[++i];
    };
    if (k == "--preset") a.preset = val();
    else if (k == "--device") a.device = val();
    else if (k == "--prompt-len") a.prompt_len = positive(k, val());
    else if (k == "--output-len") a.output_len = positive(k, val());
    else if (k == "--copy-mib") a.copy_bytes = uint64_t(positive(k, val())) << 20;
    else if (k == "--seed") a.seed = std::stoull(val());
    else if (k == "--batches") {
      a.batches.clear();
      std::stringstream ss(val());
      for (std::string item; std::getline(ss, item, ',');) a.batches.push_back(positive(k, item));
      if (a.batches.empty()) usage("--batches needs at least one batch size");
    } else {
      usage("unknown option " + k);
    }
  }
  return a;
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.find_first_not_of("0123456789", 5) == std::string::npos)
    return Device::cuda(std::stoi(s.substr(5)));
  usage("--device must be cpu, cuda or cuda:N, got '" + s + "'");
}

// Read + write bytes per second of one large device-to-device copy (memcpy on the CPU).
double copy_bandwidth_bytes_per_s(Device dev, uint64_t bytes, const bench::Options& o) {
  auto ops = kernels::make_ops(dev);
  auto pool = allocator::Pool::create({.device = dev});
  auto src = pool->allocate(bytes, "bench", "bench.copy_src");
  auto dst = pool->allocate(bytes, "bench", "bench.copy_dst");
  ops->fill_zero(src.ptr, bytes);
  ops->fill_zero(dst.ptr, bytes);
  ops->synchronize();
  bench::Timing t = bench::time_ms(o, [&] {
    ops->copy_on_device(dst.ptr, src.ptr, bytes);
    ops->synchronize();
  });
  pool->free(src);
  pool->free(dst);
  return 2.0 * double(bytes) / (t.median_ms * 1e-3);
}

struct RunResult {
  double total_s = 0, decode_s = 0;
  uint64_t output_tokens = 0;
  std::string check = "ok";
};

// B requests of random prompts, each to exactly output_len tokens.
RunResult run_batch(infer::InferenceEngine& engine, int batch, int prompt_len, int output_len,
                    uint64_t seed) {
  const int vocab = engine.model_config().vocab_size;
  std::mt19937_64 rng(seed);
  std::vector<int> generated(static_cast<size_t>(batch), 0);
  int prefilled = 0;
  infer::SamplingParams sp;
  sp.temperature = 1.0f;
  sp.max_tokens = output_len;
  sp.ignore_eos = true;
  RunResult r;
  auto t0 = Clock::now();
  for (int i = 0; i < batch; ++i) {
    std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
    for (auto& t : prompt) t = int32_t(rng() % uint64_t(vocab));
    sp.seed = rng();
    engine.add_request(std::move(prompt), sp, [&, i](const infer::TokenDelta& d) {
      int& g = generated[size_t(i)];
      if (g == 0 && !d.token_ids.empty()) ++prefilled;
      g += int(d.token_ids.size());
    });
  }
  Clock::time_point decode_start{};
  int finished = 0;
  while (engine.has_unfinished()) {
    for (const auto& out : engine.step()) {
      ++finished;
      for (const auto& c : out.outputs) {
        r.output_tokens += c.token_ids.size();
        if (c.finish_reason != infer::FinishReason::Length || int(c.token_ids.size()) != output_len)
          r.check = "request " + std::to_string(out.id) + " ended with " +
                    std::to_string(c.token_ids.size()) + " tokens (" +
                    infer::finish_reason_name(c.finish_reason) + "), expected " +
                    std::to_string(output_len) + " (length)";
      }
    }
    if (prefilled == batch && decode_start == Clock::time_point{}) decode_start = Clock::now();
  }
  auto t1 = Clock::now();
  r.total_s = std::chrono::duration<double>(t1 - t0).count();
  r.decode_s = std::chrono::duration<double>(t1 - decode_start).count();
  if (finished != batch)
    r.check = std::to_string(finished) + " of " + std::to_string(batch) + " requests finished";
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Options o = bench::parse_options(
      argc, argv, "serving", "InferenceEngine decode tokens/s and TPOT vs the memory roofline");
  Args a = parse(o);
  Device dev = Device::cpu();
  if (!a.device.empty()) dev = parse_device(a.device);
  else if (!o.quick && kernels::cuda_available()) dev = Device::cuda(0);
  if (o.quick && dev.is_cuda()) usage("--quick runs on the CPU; drop --device or --quick");
  if (a.preset.empty()) a.preset = dev.is_cuda() ? "0.5b" : "tiny";
  if (a.prompt_len == 0) a.prompt_len = dev.is_cuda() ? 128 : 32;
  if (a.output_len == 0) a.output_len = dev.is_cuda() ? 128 : 32;
  if (o.quick) {
    a.copy_bytes = std::min<uint64_t>(a.copy_bytes, 256ull << 20);
    o.repeats = std::min(o.repeats, 3);
    o.warmup = std::min(o.warmup, 1);
  }
  const int max_batch = *std::max_element(a.batches.begin(), a.batches.end());

  model::ModelConfig cfg;
  double bw = 0;
  DType dtype = DType::F32;
  try {
    cfg = model::resolve_model_config(a.preset);
    bw = copy_bandwidth_bytes_per_s(dev, a.copy_bytes, o);
    dtype = kernels::make_ops(dev)->act_dtype();
  } catch (const std::exception& e) {
    std::cerr << "bench_serving: " << e.what() << "\n";
    return 1;
  }

  // KV cache for every sequence of the largest batch at full length, plus vLLM's 1% watermark.
  const int block = 16;
  const int max_len = a.prompt_len + a.output_len;
  const uint64_t per_block = model::kv_cache_bytes(cfg, dtype, 1, block);
  const uint64_t blocks = uint64_t(max_batch) * uint64_t((max_len + block - 1) / block) * 102 / 100 + 8;
  infer::EngineOptions eo;
  eo.model = a.preset;
  eo.device = dev;
  eo.max_num_seqs = max_batch;
  eo.max_model_len = std::min(max_len + 1, cfg.max_position_embeddings);
  eo.kv_cache_bytes = blocks * per_block;
  eo.block_size = block;
  eo.seed = a.seed;
  std::unique_ptr<infer::InferenceEngine> engine;
  try {
    engine = std::make_unique<infer::InferenceEngine>(eo);
  } catch (const std::exception& e) {
    std::cerr << "bench_serving: engine: " << e.what() << "\n";
    return 1;
  }
  const infer::EngineStats st = engine->stats();
  const double dsize = double(dtype_size(dtype));
  // A decode step gathers B rows of the input embedding, but reads every other weight (and
  // the lm_head, which is the embedding itself when tied).
  const double embed_bytes = double(cfg.vocab_size) * cfg.hidden_size * dsize;
  const double weights_read = double(st.weights_bytes) - (cfg.tie_word_embeddings ? 0.0 : embed_bytes);
  const double kv_per_token = double(per_block) / block;

  bench::Table table("serving", o);
  for (int b : a.batches) {
    // Warm-up: a short run of the same batch (first-touch of KV pages, allocator, graphs).
    for (int w = 0; w < o.warmup; ++w) run_batch(*engine, b, a.prompt_len, std::min(a.output_len, 8), a.seed + 1000 + uint64_t(w));
    std::vector<RunResult> runs;
    for (int rep = 0; rep < o.repeats; ++rep)
      runs.push_back(run_batch(*engine, b, a.prompt_len, a.output_len, a.seed + uint64_t(rep)));
    std::sort(runs.begin(), runs.end(), [](const RunResult& x, const RunResult& y) { return x.decode_s < y.decode_s; });
    const RunResult& r = runs[runs.size() / 2];
    std::string check = "ok";
    for (const auto& x : runs)
      if (x.check != "ok") check = x.check;

    // Decode steps k = 1 .. output_len-1: every sequence attends over prompt_len + k tokens.
    const int steps = a.output_len - 1;
    double bytes = 0;
    for (int k = 1; k <= steps; ++k) bytes += weights_read + double(b) * double(a.prompt_len + k) * kv_per_token;
    const double roofline_s = bytes / bw;
    const double decode_tokens = double(b) * steps;
    const double achieved = r.decode_s > 0 ? decode_tokens / r.decode_s : 0;
    const double limit = roofline_s > 0 ? decode_tokens / roofline_s : 0;
    table.row({{"preset", a.preset},
               {"device", dev.str()},
               {"batch", int64_t(b)},
               {"prompt", int64_t(a.prompt_len)},
               {"output", int64_t(a.output_len)},
               {"serve_tok_s", double(r.output_tokens) / r.total_s},
               {"tpot_ms", steps > 0 ? r.decode_s / steps * 1e3 : 0.0},
               {"roof_tpot_ms", steps > 0 ? roofline_s / steps * 1e3 : 0.0},
               {"MB_per_step", steps > 0 ? bytes / steps / 1e6 : 0.0},
               {"eff_GB_s", r.decode_s > 0 ? bytes / r.decode_s / 1e9 : 0.0}},
              achieved, limit, "tok/s", check);
  }
  table.note("limit: decode tokens/s if every step only read its bytes (weights " +
             bench::fmt_bytes(weights_read) + " + K/V " + bench::fmt_bytes(kv_per_token) +
             " per cached token) at the copy bandwidth measured in this run: " +
             std::to_string(bw / 1e9).substr(0, 7) + " GB/s (read+write of a " +
             bench::fmt_bytes(double(a.copy_bytes)) + (dev.is_cuda() ? " cudaMemcpy D2D)" : " memcpy)"));
  table.note("serve_tok_s includes prefill; tpot_ms and achieved are the decode phase only; "
             "median of " + std::to_string(o.repeats) + " runs by decode time; " +
             std::string(dtype_name(dtype)) + " weights, CUDA graphs " +
             (dev.is_cuda() ? std::to_string(st.num_cuda_graphs) : std::string("n/a (CPU)")));
  return table.failures() ? 1 : 0;
}
