// Weight sync throughput: tensors shaped like the 0.5b and 7b presets (configs/models/*.json),
// bf16 on the trainer side and in the engine, bucket sizes 32 MiB .. 1 GiB. On a GPU: an NCCL
// communicator of size 1 with the engine in the same process, compared with a device-to-device
// cudaMemcpyAsync of the same bytes measured in the same run (target: ratio >= 0.8 for the
// one-GPU path). --quick (or no GPU): the host transport between two processes on a CPU,
// compared with a memcpy of the same bytes.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "harness.hpp"
#include "siesta/comm.hpp"
#include "siesta/kernels/device.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace siesta;
using namespace siesta::comm;

namespace {

// Qwen2 geometry, as in configs/models/0.5b.json and 7b.json (q/k/v carry biases).
struct Preset {
  std::string name;
  int64_t hidden, inter, layers, heads, kv_heads, vocab;
  bool tied;
};
const Preset k05b{"0.5b", 896, 4864, 24, 14, 2, 151936, true};
const Preset k7b{"7b", 3584, 18944, 28, 28, 4, 152064, false};

struct Spec {
  std::string name;
  Shape shape;
};

std::vector<Spec> preset_tensors(const Preset& p, int64_t layers) {
  const int64_t h = p.hidden, kv = p.kv_heads * (p.hidden / p.heads);
  std::vector<Spec> s{{"model.embed_tokens.weight", {p.vocab, h}}};
  for (int64_t l = 0; l < layers; ++l) {
    std::string x = "model.layers." + std::to_string(l) + ".";
    s.push_back({x + "input_layernorm.weight", {h}});
    s.push_back({x + "self_attn.q_proj.weight", {h, h}});
    s.push_back({x + "self_attn.q_proj.bias", {h}});
    s.push_back({x + "self_attn.k_proj.weight", {kv, h}});
    s.push_back({x + "self_attn.k_proj.bias", {kv}});
    s.push_back({x + "self_attn.v_proj.weight", {kv, h}});
    s.push_back({x + "self_attn.v_proj.bias", {kv}});
    s.push_back({x + "self_attn.o_proj.weight", {h, h}});
    s.push_back({x + "post_attention_layernorm.weight", {h}});
    s.push_back({x + "mlp.gate_proj.weight", {p.inter, h}});
    s.push_back({x + "mlp.up_proj.weight", {p.inter, h}});
    s.push_back({x + "mlp.down_proj.weight", {h, p.inter}});
  }
  s.push_back({"model.norm.weight", {h}});
  if (!p.tied) s.push_back({"lm_head.weight", {p.vocab, h}});
  return s;
}

// Carves named tensors of dtype t out of one block at 256-byte aligned offsets.
size_t layout(const std::vector<Spec>& specs, DType t, std::byte* base, Device dev,
              std::vector<NamedTensor>* out) {
  size_t off = 0;
  for (const auto& s : specs) {
    off = (off + 255) / 256 * 256;
    if (out) out->push_back({s.name, TensorView{base + off, t, s.shape, dev}});
    off += size_t(numel(s.shape)) * dtype_size(t);
  }
  return off;
}

size_t params(const std::vector<Spec>& specs) {
  size_t n = 0;
  for (const auto& s : specs) n += size_t(numel(s.shape));
  return n;
}

const std::vector<size_t> kBucketsMiB{32, 64, 128, 256, 512, 1024};

#ifdef SIESTA_WITH_CUDA
void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::cerr << "bench_weight_sync: " << what << ": " << cudaGetErrorString(e) << "\n";
    std::exit(1);
  }
}

// Compares windows at the start, middle and end of every destination with the source (same
// dtype) or with the host cast of the source.
std::string sample_check(const std::vector<NamedTensor>& src, const std::vector<NamedTensor>& dst) {
  const size_t w = 16 << 10;
  for (size_t i = 0; i < src.size(); ++i) {
    size_t n = size_t(dst[i].view.numel());
    size_t we = std::min(n, w / 2);
    for (size_t start : {size_t(0), n / 2 - std::min(n / 2, we / 2), n - we}) {
      std::vector<std::byte> a(we * dtype_size(src[i].view.dtype)), b(we * 2), want(we * 2);
      ck(cudaMemcpy(a.data(), static_cast<std::byte*>(src[i].view.data) + start * dtype_size(src[i].view.dtype),
                    a.size(), cudaMemcpyDeviceToHost), "check copy");
      ck(cudaMemcpy(b.data(), static_cast<std::byte*>(dst[i].view.data) + start * 2, b.size(),
                    cudaMemcpyDeviceToHost), "check copy");
      convert_host(a.data(), src[i].view.dtype, want.data(), DType::BF16, we);
      if (b != want) return "mismatch in " + dst[i].name;
    }
  }
  return "ok";
}

void fill_random(std::byte* dst, size_t bytes, DType t) {
  // A 64 MiB block of random finite values, tiled with a shifting offset: cheap to make, and
  // no two neighbouring tensors hold the same bytes.
  const size_t seed_bytes = 64 << 20;
  std::vector<float> f(seed_bytes / dtype_size(t));   // one float per element of the block
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& x : f) x = u(rng);
  std::vector<std::byte> host(seed_bytes);
  convert_host(f.data(), DType::F32, host.data(), t, seed_bytes / dtype_size(t));
  std::byte* seed = nullptr;
  ck(cudaMalloc(&seed, seed_bytes), "cudaMalloc seed");
  ck(cudaMemcpy(seed, host.data(), seed_bytes, cudaMemcpyHostToDevice), "seed upload");
  size_t shift = 0;
  for (size_t off = 0; off < bytes;) {
    size_t from = (shift * 4096) % (seed_bytes / 2);
    size_t len = std::min(bytes - off, seed_bytes - from);
    ck(cudaMemcpy(dst + off, seed + from, len, cudaMemcpyDeviceToDevice), "fill");
    off += len;
    shift += 7;
  }
  ck(cudaDeviceSynchronize(), "fill");  // the sync's non-blocking streams would not wait for it
  ck(cudaFree(seed), "cudaFree seed");
}

int run_gpu(const bench::Options& o) {
  bench::Table table("weight_sync", o);
  auto cs = kernels::cuda_status();
  NcclTransport t(make_unique_id(), 0, 1, 0, {60000});
  ck(cudaSetDevice(0), "cudaSetDevice");
  for (const Preset& p : {k05b, k7b}) {
    for (DType src_t : {DType::BF16, DType::F32}) {
      if (src_t == DType::F32 && p.name != "0.5b") continue;  // the cast path, once
      int64_t layers = p.layers;
      size_t free_b = 0, total_b = 0;
      ck(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
      auto need = [&](int64_t l) {
        auto sp = preset_tensors(p, l);
        return layout(sp, src_t, nullptr, Device::cuda(0), nullptr) +
               layout(sp, DType::BF16, nullptr, Device::cuda(0), nullptr) + (2ull << 30) + (1ull << 30);
      };
      while (layers > 1 && need(layers) > free_b) --layers;
      auto specs = preset_tensors(p, layers);
      if (layers != p.layers)
        table.note(p.name + ": capped at " + std::to_string(layers) + " of " +
                   std::to_string(p.layers) + " layers to fit sources, engine weights and 2 GiB "
                   "of staging in " + bench::fmt_bytes(double(free_b)) + " free");
      size_t src_bytes = layout(specs, src_t, nullptr, Device::cuda(0), nullptr);
      size_t dst_bytes = layout(specs, DType::BF16, nullptr, Device::cuda(0), nullptr);
      std::byte *sb = nullptr, *db = nullptr;
      ck(cudaMalloc(&sb, src_bytes), "cudaMalloc sources");
      ck(cudaMalloc(&db, dst_bytes), "cudaMalloc destinations");
      std::vector<NamedTensor> src, dst;
      layout(specs, src_t, sb, Device::cuda(0), &src);
      layout(specs, DType::BF16, db, Device::cuda(0), &dst);
      fill_random(sb, src_bytes, src_t);
      const size_t payload = params(specs) * 2;

      // The limit: one device-to-device copy of the same number of bytes.
      cudaStream_t s;
      ck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
      auto lim = bench::time_ms(o, [&] {
        ck(cudaMemcpyAsync(db, sb, payload, cudaMemcpyDeviceToDevice, s), "d2d");
        ck(cudaStreamSynchronize(s), "sync");
      });
      const double limit_gbps = double(payload) / (lim.median_ms * 1e-3) / 1e9;
      ck(cudaStreamDestroy(s), "stream");

      std::vector<size_t> buckets = o.quick ? std::vector<size_t>{32, 256} : kBucketsMiB;
      for (size_t mib : buckets) {
        for (bool fused : {true, false}) {
          SyncOptions so;
          so.bucket_bytes = mib << 20;
          so.fuse_local = fused;
          ck(cudaMemset(db, 0, dst_bytes), "memset");
          ck(cudaDeviceSynchronize(), "memset");
          WeightReceiver local(t, dst, so);
          WeightSender sender(t, so);
          SyncStats st;
          auto tm = bench::time_ms(o, [&] { st = sender.send(src, &local); });
          std::string check = local.weights_valid() ? sample_check(src, dst) : "engine invalid";
          double gbps = double(payload) / (tm.median_ms * 1e-3) / 1e9;
          table.row({{"preset", p.name + (layers != p.layers ? "*" : "")},
                     {"src", std::string(dtype_name(src_t))},
                     {"path", std::string(fused ? "fused" : "staged")},
                     {"bucket_MiB", int64_t(mib)},
                     {"payload", bench::fmt_bytes(double(payload))},
                     {"buckets", int64_t(st.buckets)},
                     {"ms", tm.median_ms},
                     {"staging", bench::fmt_bytes(double(st.peak_staging_bytes))}},
                    gbps, limit_gbps, "GB/s", check);
        }
      }
      ck(cudaFree(sb), "cudaFree");
      ck(cudaFree(db), "cudaFree");
    }
  }
  table.note("device: " + (cs.gpus.empty() ? std::string("?") : cs.gpus[0].name) +
             "; NCCL " + nccl_version_string() + ", communicator of size 1, engine in-process");
  table.note("limit: cudaMemcpyAsync device-to-device of the same payload bytes, same run; "
             "GB/s = payload bytes / sync time (manifest, votes, staging alloc/free included)");
  table.note("fused: one pass, source -> engine tensor (world 1); staged: pack -> bucket -> "
             "broadcast -> unpack, the multi-rank data path (two passes over memory on one GPU)");
  table.note("target: ratio >= 0.8 for the one-GPU (fused) path with bf16 sources");
  return table.failures() ? 1 : 0;
}
#endif

// ---- host transport (CPU) -------------------------------------------------------------------
uint64_t fnv(const std::vector<NamedTensor>& ts) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& t : ts) {
    auto* p = static_cast<const unsigned char*>(t.view.data);
    for (size_t i = 0; i < t.view.bytes(); i += 64) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

int run_host(const bench::Options& o) {
  bench::Table table("weight_sync", o);
  // The 0.5b geometry with 2 layers and a 32k vocabulary: ~118 MB in bf16, many buckets.
  Preset p = k05b;
  p.vocab = 32768;
  auto specs = preset_tensors(p, 2);
  std::vector<size_t> buckets_mib = o.quick ? std::vector<size_t>{4, 32} : std::vector<size_t>{4, 16, 32, 64};
  const int syncs = o.warmup + o.repeats;
  HostListener l;
  HostTransportOptions ho;
  ho.port = l.port();
  int pipefd[2];
  if (pipe(pipefd) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {  // the engine process
    close(pipefd[0]);
    int code = 0;
    try {
      auto t = HostTransport::join(1, 2, ho);
      std::vector<std::byte> block(layout(specs, DType::BF16, nullptr, Device::cpu(), nullptr));
      std::vector<NamedTensor> dst;
      layout(specs, DType::BF16, block.data(), Device::cpu(), &dst);
      for (size_t b = 0; b < buckets_mib.size(); ++b) {
        WeightReceiver r(*t, dst);
        for (int i = 0; i < syncs; ++i) r.receive();
        uint64_t h = r.weights_valid() ? fnv(dst) : 0;
        if (write(pipefd[1], &h, 8) != 8) code = 1;
      }
    } catch (const std::exception& e) {
      std::cerr << "engine: " << e.what() << "\n";
      code = 1;
    }
    _exit(code);
  }
  close(pipefd[1]);
  auto t = HostTransport::serve(std::move(l), 2, ho);
  std::vector<std::byte> sblock(layout(specs, DType::F32, nullptr, Device::cpu(), nullptr));
  std::vector<NamedTensor> src;
  layout(specs, DType::F32, sblock.data(), Device::cpu(), &src);
  {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto& s : src) {
      auto* f = s.view.as<float>();
      for (int64_t i = 0; i < s.view.numel(); ++i) f[i] = u(rng);
    }
  }
  // What the engine must hold: the sources cast to bf16.
  std::vector<std::byte> eblock(layout(specs, DType::BF16, nullptr, Device::cpu(), nullptr));
  std::vector<NamedTensor> expect;
  layout(specs, DType::BF16, eblock.data(), Device::cpu(), &expect);
  for (size_t i = 0; i < src.size(); ++i)
    convert_host(src[i].view.data, DType::F32, expect[i].view.data, DType::BF16, size_t(src[i].view.numel()));
  const uint64_t want = fnv(expect);
  const size_t payload = params(specs) * 2;
  std::vector<std::byte> a(payload), b(payload);
  std::memset(a.data(), 1, payload);
  auto lim = bench::time_ms(o, [&] { std::memcpy(b.data(), a.data(), payload); });
  const double limit_gbps = double(payload) / (lim.median_ms * 1e-3) / 1e9;
  int failures = 0;
  for (size_t mib : buckets_mib) {
    SyncOptions so;
    so.bucket_bytes = mib << 20;
    WeightSender sender(*t, so);
    SyncStats st;
    auto tm = bench::time_ms(o, [&] { st = sender.send(src); });
    uint64_t got = 0;
    pollfd pfd{pipefd[0], POLLIN, 0};
    std::string check = "engine did not report";
    if (poll(&pfd, 1, 30000) == 1 && read(pipefd[0], &got, 8) == 8)
      check = got == want ? "ok" : "engine weights differ from the cast sources";
    failures += check != "ok";
    table.row({{"preset", std::string("0.5b-2L-32k")},
               {"src", std::string("F32")},
               {"path", std::string("host tcp, 1 engine")},
               {"bucket_MiB", int64_t(mib)},
               {"payload", bench::fmt_bytes(double(payload))},
               {"buckets", int64_t(st.buckets)},
               {"ms", tm.median_ms},
               {"staging", bench::fmt_bytes(double(st.peak_staging_bytes))}},
              double(payload) / (tm.median_ms * 1e-3) / 1e9, limit_gbps, "GB/s", check);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  table.note("host transport over TCP loopback to a second process; fp32 sources cast to bf16");
  table.note("limit: memcpy of the same payload bytes in this process, same run");
  return failures || !WIFEXITED(status) || WEXITSTATUS(status) ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto o = bench::parse_options(argc, argv, "bench_weight_sync",
                                "weight sync GB/s vs device-to-device copy (GPU) or memcpy (--quick / CPU)");
#ifdef SIESTA_WITH_CUDA
  if (!o.quick && kernels::cuda_available()) return run_gpu(o);
#endif
  return run_host(o);
}
