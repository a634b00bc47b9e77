// Decode and serving throughput of the inference engine, for the 0.5b preset at batch 1, 16, 64
// and 256 (random prompts of 128 tokens, 128 greedy output tokens each, eos ignored), against
// the HBM roofline measured in the same run:
//   a decode step must read every weight once (an untied input embedding only for the rows it
//   looks up), read K and V of every cached token of every running sequence, write the new
//   tokens' K and V and write the logits; roofline step time = those bytes / the device-to-
//   device copy bandwidth (bytes read + written, 2 GiB cudaMemcpyAsync, this run).
// Rows per batch size:
//   decode   tokens/s over the decode-only steps (every sequence decoding, no prefill in the
//            step) vs the roofline tokens/s of the same steps; tpot_ms = median step time
//   serving  generated tokens / wall time of the whole batch, prefill included, vs the same
//            decode roofline
// Check: every request produced exactly the asked number of tokens.
// --quick (or no GPU): the tiny preset on the CPU backend at batch 1 and 4 (limit: memcpy).
// --preset NAME --batches 1,16,64,256 --prompt N --output N override the defaults.
// --profile: one more run at the first batch size with every kernel recorded through CUPTI
// (device time per kernel per step, GPU idle time); its figures are not part of the table.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "kernel_profile.hpp"
#include "limits.hpp"
#include "siesta/infer/engine.hpp"
#include "siesta/kernels/device.hpp"
#include "siesta/model/presets.hpp"

using namespace siesta;
using namespace siesta::infer;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string preset = "0.5b";
  std::vector<int> batches = {1, 16, 64, 256};
  int prompt = 128, output = 128;
  bool profile = false;
  bool async_scheduling = true;
};

std::vector<int> split_ints(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(std::stoi(x));
  return out;
}

struct Run {
  int decode_steps = 0;
  double decode_s = 0, roofline_s = 0, wall_s = 0;
  std::vector<double> step_ms;
  std::vector<double> launch_ms;  // of each step: host time until the forward was launched
  uint64_t generated = 0;
  std::string check = "ok";
};

}  // namespace

int main(int argc, char** argv) {
  auto o = bench::parse_options(argc, argv, "bench_decode",
                                "engine decode / serving tokens/s vs the HBM roofline");
  const bool cuda = !o.quick && kernels::cuda_available();
  Args a;
  if (!cuda) a = {"tiny", {1, 4}, 16, 16};
  for (size_t i = 0; i < o.rest.size(); ++i) {
    const std::string& k = o.rest[i];
    const bool has = i + 1 < o.rest.size();
    if (k == "--preset" && has) a.preset = o.rest[++i];
    else if (k == "--batches" && has) a.batches = split_ints(o.rest[++i]);
    else if (k == "--prompt" && has) a.prompt = std::stoi(o.rest[++i]);
    else if (k == "--output" && has) a.output = std::stoi(o.rest[++i]);
    else if (k == "--profile") a.profile = true;
    else if (k == "--no-async-scheduling") a.async_scheduling = false;
    else {
      std::cerr << "bench_decode: unknown option '" << k
                << "' (allowed: --preset NAME --batches a,b --prompt N --output N --profile "
                   "--no-async-scheduling, plus the "
                   "harness's)\n";
      return 2;
    }
  }
  if (a.profile && !cuda) {
    std::cerr << "bench_decode: --profile records CUDA kernels, and this run uses the CPU backend "
                 "(no usable GPU, or --quick)\n";
    return 2;
  }
  const int max_batch = *std::max_element(a.batches.begin(), a.batches.end());
  bench::Table table("decode", o);
  try {
    const double hbm = bench::limits::hbm_gbps(o, cuda);
    EngineOptions eo;
    eo.model = a.preset;
    eo.device = cuda ? Device::cuda(0) : Device::cpu();
    eo.max_num_seqs = max_batch;
    eo.max_model_len = a.prompt + a.output + 16;
    eo.max_num_batched_tokens = std::max(8192, max_batch);
    if (cuda) eo.kv_cache_memory_fraction = 0.5;
    else eo.kv_cache_bytes = 64ull << 20;
    eo.async_scheduling = a.async_scheduling;
    auto t0 = Clock::now();
    auto engine = std::make_unique<InferenceEngine>(eo);
    const double build_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto cfg = engine->model_config();  // a copy: --profile replaces the engine
    const auto st = engine->stats();
    const double act = double(dtype_size(engine->weight_dtype()));
    const double kv_per_token = 2.0 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * act;
    const double embed_bytes = double(cfg.vocab_size) * cfg.hidden_size * act;
    // Weights a decode step reads: all of them, except an untied input embedding (rows only).
    const double weights_read = double(st.weights_bytes) - (cfg.tie_word_embeddings ? 0.0 : embed_bytes);

    uint64_t seed = 1;
    auto prompts = [&](int n) {
      std::vector<std::vector<int32_t>> ps(static_cast<size_t>(n));
      for (auto& p : ps)
        for (int j = 0; j < a.prompt; ++j) {
          seed = seed * 6364136223846793005ull + 1442695040888963407ull;
          p.push_back(int32_t((seed >> 33) % uint64_t(cfg.vocab_size)));
        }
      return ps;
    };
    SamplingParams sp;
    sp.temperature = 0;
    sp.max_tokens = a.output;
    sp.ignore_eos = true;

    auto run = [&](int batch) {
      Run r;
      const auto ps = prompts(batch);
      const auto s0 = engine->stats();
      for (const auto& p : ps) engine->add_request(p, sp);
      int finished = 0;
      auto w0 = Clock::now();
      auto prev = engine->stats();
      while (engine->has_unfinished()) {
        auto t = Clock::now();
        auto outs = engine->step();
        const double dt = std::chrono::duration<double>(Clock::now() - t).count();
        const auto now = engine->stats();
        const uint64_t dp = now.prompt_tokens_total - prev.prompt_tokens_total;
        const uint64_t dg = now.generation_tokens_total - prev.generation_tokens_total;
        if (dp == 0 && dg == uint64_t(batch)) {
          // Context of every sequence: its prompt and what it generated before this step.
          const double ctx = double(batch) * a.prompt +
                             double(prev.generation_tokens_total - s0.generation_tokens_total);
          const double bytes = weights_read + ctx * kv_per_token + batch * kv_per_token +
                               double(batch) * cfg.vocab_size * act +
                               (cfg.tie_word_embeddings ? 0.0 : double(batch) * cfg.hidden_size * act);
          r.roofline_s += bytes / (hbm * 1e9);
          r.decode_s += dt;
          r.step_ms.push_back(dt * 1e3);
          r.launch_ms.push_back(now.last_step_launch_ms);
          ++r.decode_steps;
        }
        for (const auto& out : outs) {
          ++finished;
          if (int(out.outputs.at(0).token_ids.size()) != a.output && r.check == "ok")
            r.check = "a request produced " + std::to_string(out.outputs[0].token_ids.size()) +
                      " tokens, not " + std::to_string(a.output);
        }
        prev = now;
      }
      r.wall_s = std::chrono::duration<double>(Clock::now() - w0).count();
      r.generated = prev.generation_tokens_total - s0.generation_tokens_total;
      if (finished != batch && r.check == "ok")
        r.check = std::to_string(finished) + " of " + std::to_string(batch) + " requests finished";
      std::sort(r.step_ms.begin(), r.step_ms.end());
      std::sort(r.launch_ms.begin(), r.launch_ms.end());
      return r;
    };

    {  // warm-up: every code path once (prefill, decode graphs, sampling)
      auto keep = sp.max_tokens;
      sp.max_tokens = 4;
      run(std::min(4, max_batch));
      sp.max_tokens = keep;
    }
    for (int batch : a.batches) {
      Run r;
      for (int i = 0; i < (o.warmup > 0 ? 2 : 1); ++i) r = run(batch);   // keep the last
      const double tpot = r.step_ms.empty() ? 0 : r.step_ms[r.step_ms.size() / 2];
      const double host = r.launch_ms.empty() ? 0 : r.launch_ms[r.launch_ms.size() / 2];
      const double roof_tok_s = r.roofline_s > 0 ? double(batch) * r.decode_steps / r.roofline_s : 0;
      const double roof_ms = r.decode_steps ? r.roofline_s * 1e3 / r.decode_steps : 0;
      using Cols = std::vector<std::pair<std::string, bench::Value>>;
      auto cols = [&](const char* what) {
        return Cols{{"what", std::string(what)}, {"preset", a.preset}, {"batch", int64_t(batch)},
                    {"prompt", int64_t(a.prompt)}, {"output", int64_t(a.output)},
                    {"decode_steps", int64_t(r.decode_steps)}, {"tpot_ms", tpot},
                    {"launch_ms", host}, {"roofline_ms", roof_ms}};
      };
      const std::string check =
          r.check != "ok" ? r.check : r.decode_steps == 0 ? "no decode-only step" : "ok";
      table.row(cols("decode"), r.decode_s > 0 ? double(batch) * r.decode_steps / r.decode_s : 0,
                roof_tok_s, "tok/s", check);
      table.row(cols("serving"), double(r.generated) / r.wall_s, roof_tok_s, "tok/s", check);
    }
    table.note("device: " + bench::limits::device_name(cuda) + "; HBM limit " +
               std::to_string(hbm).substr(0, 6) + " GB/s (" +
               (cuda ? "2 GiB device-to-device cudaMemcpyAsync" : "memcpy") +
               ", bytes read + written, this run)");
    table.note("roofline step = (weights " + bench::fmt_bytes(weights_read) +
               " + KV of every cached token (" + bench::fmt_bytes(kv_per_token) +
               "/token) + new K/V + logits) / HBM limit; tpot_ms = median decode step (host "
               "clock around InferenceEngine::step, sampling included); launch_ms = median host "
               "time of a decode step until its forward was launched (scheduling, metadata "
               "upload, graph launch; on the CPU backend the forward too)");
    table.note("engine: " + std::to_string(engine->stats().num_cuda_graphs) + " decode CUDA graphs, KV " +
               bench::fmt_bytes(double(st.kv_cache_bytes)) + ", built in " +
               std::to_string(build_s).substr(0, 5) + " s; greedy sampling, random prompt ids; " +
               (a.async_scheduling ? "async scheduling (" +
                                         std::to_string(engine->stats().num_lookahead_steps) +
                                         " steps queued ahead)"
                                   : "one step at a time (--no-async-scheduling)"));
    if (a.profile) try {
      // A fresh engine built while recording, so that its decode graphs are captured with
      // CUPTI active; the timed engine goes first to free its KV cache.
      engine.reset();
      bench::KernelProfile prof;
      engine = std::make_unique<InferenceEngine>(eo);
      const Run r = run(a.batches.front());
      const auto rep = prof.stop(30);  // and 30 kernels (six layers) from mid-run, in order
      std::cout << "profiled run: batch " << a.batches.front() << ", " << r.decode_steps
                << " decode-only steps (the records include the prefill; per-step figures "
                   "divide by the decode steps)\n";
      bench::print_kernel_profile(rep, r.decode_steps, 20, std::cout);
    } catch (const std::exception& ex) {  // the table's rows stand without the breakdown
      std::cout << "bench_decode: no kernel profile: " << ex.what() << "\n";
    }
  } catch (const std::exception& ex) {
    std::cerr << "bench_decode: " << ex.what() << "\n";
    return 1;
  }
  return table.failures() ? 1 : 0;
}
