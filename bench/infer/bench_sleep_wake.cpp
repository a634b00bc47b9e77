// Sleep/wake latencies of the inference engine (vLLM sleep mode) for the 0.5b and 7b presets
// (random weights; KV cache = the engine's default 90% of the free device memory), each
// against a limit measured in the same run:
//   sleep(1)           weights -> pinned host backup, KV discarded: GB/s of weights vs one
//                      plain pinned device->host cudaMemcpyAsync
//   wake_up() after 1  weights restored, KV mapped: GB/s of weights vs pinned host->device
//   sleep(2)           weights and KV discarded: ms vs the driver's own unmap + release of
//                      the same bytes in the same chunks (ratio > 100% = engine/pool overhead)
//   wake_up(weights)   after sleep(2): ms vs the driver's create + map + set-access
//   wake_up(kv_cache)  KV cache and workspace mapped: ms vs the same driver floor
// Checks: level 1 gives the same greedy tokens as before; level 2 refuses to generate until
// weights are loaded (WeightsNotLoaded).
// --quick (or no GPU): the tiny and small presets on the CPU backend, limits = memcpy.
// --presets a,b picks presets; --kv-fraction F the KV share of free device memory.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "limits.hpp"
#include "siesta/infer/engine.hpp"
#include "siesta/kernels/device.hpp"
#include "siesta/model/presets.hpp"
#include "siesta/model/weights.hpp"

using namespace siesta;
using namespace siesta::infer;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

std::vector<std::vector<int32_t>> some_prompts(int vocab) {
  std::vector<std::vector<int32_t>> ps(2);
  for (int i = 0; i < 24; ++i) {
    ps[0].push_back(int32_t((i * 7919 + 13) % std::min(vocab, 256)));
    ps[1].push_back(int32_t((i * 104729 + 5) % std::min(vocab, 256)));
  }
  return ps;
}
std::vector<std::vector<int32_t>> tokens_of(const std::vector<RequestOutput>& outs) {
  std::vector<std::vector<int32_t>> t;
  for (const auto& o : outs) t.push_back(o.outputs.at(0).token_ids);
  return t;
}

struct Args {
  std::vector<std::string> presets;
  double kv_fraction = 0.9;
};

}  // namespace

int main(int argc, char** argv) {
  auto o = bench::parse_options(argc, argv, "bench_sleep_wake",
                                "engine sleep/wake latencies vs pinned copy bandwidth and the "
                                "driver's map floor");
  Args a;
  for (size_t i = 0; i < o.rest.size(); ++i) {
    const std::string& k = o.rest[i];
    if (k == "--presets" && i + 1 < o.rest.size()) a.presets = split(o.rest[++i]);
    else if (k == "--kv-fraction" && i + 1 < o.rest.size()) a.kv_fraction = std::stod(o.rest[++i]);
    else {
      std::cerr << "bench_sleep_wake: unknown option '" << k
                << "' (allowed: --presets a,b --kv-fraction F, plus the harness's)\n";
      return 2;
    }
  }
  const bool cuda = !o.quick && kernels::cuda_available();
  if (a.presets.empty()) a.presets = cuda ? std::vector<std::string>{"0.5b", "7b"}
                                          : std::vector<std::string>{"tiny", "small"};
  const Device dev = cuda ? Device::cuda(0) : Device::cpu();
  const uint64_t chunk = cuda ? (1ull << 30) : (64ull << 20);

  bench::Table table("sleep_wake", o);
  const double d2h = bench::limits::pinned_copy_gbps(o, cuda, false);
  const double h2d = bench::limits::pinned_copy_gbps(o, cuda, true);
  table.note("device: " + bench::limits::device_name(cuda) + "; pinned copy d2h " +
             std::to_string(d2h).substr(0, 5) + " GB/s, h2d " + std::to_string(h2d).substr(0, 5) +
             " GB/s (" + (cuda ? "2 GiB cudaMemcpyAsync" : "memcpy") + ", this run)");

  for (const std::string& preset : a.presets) {
    try {
      const auto cfg = model::load_preset(preset);
      const uint64_t wbytes = model::weights_bytes(cfg, cuda ? DType::BF16 : DType::F32);
      // The pinned backup is allocated once, up front (pinning is slow: ~6 s for 8 GiB).
      auto t0 = Clock::now();
      auto pool = std::shared_ptr<allocator::Pool>(
          allocator::Pool::create({dev, chunk, 0, wbytes + (256ull << 20)}));
      const double pin_ms = ms_since(t0);
      EngineOptions eo;
      eo.model = preset;
      eo.device = dev;
      eo.pool = pool;
      eo.max_model_len = std::min(4096, cfg.max_position_embeddings);
      if (cuda) eo.kv_cache_memory_fraction = a.kv_fraction;
      else eo.kv_cache_bytes = 64ull << 20;
      eo.max_num_seqs = 64;
      t0 = Clock::now();
      auto e = std::make_unique<InferenceEngine>(eo);
      const double build_ms = ms_since(t0);
      const auto st = e->stats();
      SamplingParams greedy;
      greedy.temperature = 0;
      greedy.max_tokens = 8;
      greedy.ignore_eos = true;
      const auto ps = some_prompts(cfg.vocab_size);
      const auto before = tokens_of(e->generate(ps, greedy));

      std::vector<double> s1, w1, s2, w2w, w2k;
      for (int i = 0; i < o.warmup + o.repeats; ++i) {
        t0 = Clock::now();
        e->sleep(1);
        const double a1 = ms_since(t0);
        t0 = Clock::now();
        e->wake_up();
        const double b1 = ms_since(t0);
        if (i >= o.warmup) s1.push_back(a1), w1.push_back(b1);
      }
      const std::string check1 =
          tokens_of(e->generate(ps, greedy)) == before ? "ok" : "tokens changed by level 1";
      for (int i = 0; i < o.warmup + o.repeats; ++i) {
        t0 = Clock::now();
        e->sleep(2);
        const double a2 = ms_since(t0);
        t0 = Clock::now();
        e->wake_up({"weights"});
        const double b2 = ms_since(t0);
        t0 = Clock::now();
        e->wake_up({"kv_cache"});
        const double c2 = ms_since(t0);
        if (i >= o.warmup) s2.push_back(a2), w2w.push_back(b2), w2k.push_back(c2);
      }
      std::string check2 = "generation after sleep(2) was not refused";
      try {
        e->generate(ps, greedy);
      } catch (const InferError& err) {
        check2 = err.kind() == ErrorKind::WeightsNotLoaded ? "ok" : std::string("wrong error: ") + err.what();
      }
      const uint64_t kv_bytes = st.kv_cache_bytes + st.workspace_bytes;
      table.note(preset + ": weights " + bench::fmt_bytes(double(st.weights_bytes)) + ", KV cache " +
                 bench::fmt_bytes(double(st.kv_cache_bytes)) + " + workspace " +
                 bench::fmt_bytes(double(st.workspace_bytes)) + "; pool with pinned backup " +
                 std::to_string(int(pin_ms)) + " ms, engine built in " +
                 std::to_string(int(build_ms)) + " ms (once each)");
      // The engine and its pool go away before the driver floor takes the same memory.
      const uint64_t weights_b = st.weights_bytes, moved_b = st.weights_bytes + st.buffers_bytes;
      e.reset();
      eo.pool.reset();
      pool.reset();   // the pinned backup goes back too
      const auto fw = cuda ? bench::limits::vmm_floor(o, weights_b, chunk) : bench::limits::MapFloor{};
      const auto fk = cuda ? bench::limits::vmm_floor(o, kv_bytes, chunk) : bench::limits::MapFloor{};

      using Cols = std::vector<std::pair<std::string, bench::Value>>;
      auto cols = [&](const char* op, uint64_t bytes, double ms) {
        return Cols{{"preset", preset}, {"op", std::string(op)},
                    {"bytes", bench::fmt_bytes(double(bytes))}, {"ms", ms}};
      };
      const double ms_s1 = median(s1), ms_w1 = median(w1);
      table.row(cols("sleep(1)", moved_b, ms_s1), double(moved_b) / (ms_s1 * 1e6), d2h, "GB/s",
                check1);
      table.row(cols("wake_up() after 1", moved_b, ms_w1), double(moved_b) / (ms_w1 * 1e6), h2d,
                "GB/s", check1);
      table.row(cols("sleep(2)", weights_b + kv_bytes, median(s2)), median(s2),
                fw.release_ms + fk.release_ms, "ms", check2);
      table.row(cols("wake_up(weights)", weights_b, median(w2w)), median(w2w), fw.map_ms, "ms", check2);
      table.row(cols("wake_up(kv_cache)", kv_bytes, median(w2k)), median(w2k), fk.map_ms, "ms", check2);
    } catch (const std::exception& ex) {
      std::cerr << "bench_sleep_wake: " << preset << ": " << ex.what() << "\n";
      table.row({{"preset", preset}, {"op", std::string("-")}, {"bytes", std::string("-")}, {"ms", 0.0}},
                0, 0, "-", std::string("error: ") + ex.what());
    }
  }
  table.note("level-1 rows: GB/s = bytes copied (weights + rope buffers) / time; limit = pinned copy of "
             "that direction; the KV cache is discarded / mapped within the same time");
  table.note(cuda ? "level-2 rows: ms; limit = the driver's unmap+release (sleep) or create+map+"
                    "set-access (wake) of the same bytes in the pool's 1 GiB chunks, this run"
                  : "level-2 rows: ms; no driver floor on the CPU backend (limit 0)");
  return table.failures() ? 1 : 0;
}
