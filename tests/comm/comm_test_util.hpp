// Helpers for the comm tests: tensors shaped like a tiny model (host memory), the bytes an
// engine should end up with, and forked child processes that report back through a pipe.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "siesta/comm.hpp"
#include "siesta/kernels/tensor.hpp"

namespace siesta::comm::test {

struct TensorSpec {
  std::string name;
  Shape shape;
  DType source_dtype;  // what the trainer holds; the engine holds BF16
};

// A 4-layer model with hidden 256, MLP 704, vocab 1000 (about 3.3M parameters, 6.6 MB in bf16).
// fp32 and bf16 sources alternate so that both the cast and the plain copy are exercised.
inline std::vector<TensorSpec> tiny_model() {
  const int64_t h = 256, kv = 64, mlp = 704, vocab = 1000;
  std::vector<TensorSpec> s{{"model.embed_tokens.weight", {vocab, h}, DType::F32}};
  for (int l = 0; l < 4; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    DType a = l % 2 ? DType::BF16 : DType::F32;
    s.push_back({p + "input_layernorm.weight", {h}, DType::F32});
    s.push_back({p + "self_attn.q_proj.weight", {h, h}, a});
    s.push_back({p + "self_attn.k_proj.weight", {kv, h}, a});
    s.push_back({p + "self_attn.v_proj.weight", {kv, h}, DType::BF16});
    s.push_back({p + "self_attn.o_proj.weight", {h, h}, DType::F32});
    s.push_back({p + "post_attention_layernorm.weight", {h}, DType::BF16});
    s.push_back({p + "mlp.gate_proj.weight", {mlp, h}, a});
    s.push_back({p + "mlp.up_proj.weight", {mlp, h}, DType::BF16});
    s.push_back({p + "mlp.down_proj.weight", {h, mlp}, DType::F32});
  }
  s.push_back({"model.norm.weight", {h}, DType::F32});
  s.push_back({"lm_head.weight", {vocab, h}, DType::BF16});
  return s;
}

// Owns host storage for a set of named tensors.
struct HostTensors {
  std::vector<std::vector<std::byte>> storage;
  std::vector<NamedTensor> tensors;
};

inline HostTensors make_tensors(const std::vector<TensorSpec>& specs, bool as_source,
                                uint64_t seed) {
  HostTensors r;
  r.storage.reserve(specs.size());
  uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (const auto& s : specs) {
    DType t = as_source ? s.source_dtype : DType::BF16;
    size_t n = size_t(numel(s.shape));
    r.storage.emplace_back(n * dtype_size(t));
    std::vector<float> vals(n);
    for (auto& v : vals) {  // a cheap LCG: reproducible values in [-2, 2)
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      v = float(int64_t(x >> 40) - (1ll << 23)) / float(1 << 22);
    }
    convert_host(vals.data(), DType::F32, r.storage.back().data(), t, n);
    r.tensors.push_back({s.name, TensorView{r.storage.back().data(), t, s.shape, Device::cpu()}});
  }
  return r;
}

// What an engine must hold after a sync: each source cast to bf16 on the host.
inline std::map<std::string, uint64_t> expected_hashes(const HostTensors& src) {
  std::map<std::string, uint64_t> h;
  for (const auto& t : src.tensors) {
    std::vector<uint16_t> bf(size_t(t.view.numel()));
    convert_host(t.view.data, t.view.dtype, bf.data(), DType::BF16, bf.size());
    uint64_t v = 1469598103934665603ull;
    for (size_t i = 0; i < bf.size() * 2; ++i)
      v = (v ^ reinterpret_cast<const unsigned char*>(bf.data())[i]) * 1099511628211ull;
    h[t.name] = v;
  }
  return h;
}

inline std::map<std::string, uint64_t> actual_hashes(const HostTensors& dst) {
  std::map<std::string, uint64_t> h;
  for (const auto& t : dst.tensors) {
    uint64_t v = 1469598103934665603ull;
    auto* p = static_cast<const unsigned char*>(t.view.data);
    for (size_t i = 0; i < t.view.bytes(); ++i) v = (v ^ p[i]) * 1099511628211ull;
    h[t.name] = v;
  }
  return h;
}

inline std::string hashes_text(const std::map<std::string, uint64_t>& h) {
  std::string s;
  for (const auto& [k, v] : h) s += k + " " + std::to_string(v) + "\n";
  return s;
}

// ---- child processes --------------------------------------------------------------------
struct Child {
  pid_t pid = -1;
  int fd = -1;
};
struct ChildResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  bool timed_out = false;
  std::string message;
  double seconds = 0;  // from wait_child's start to the child's end
};

// Runs body(message) in a forked child; its return value is the exit code, message goes back
// through a pipe. The child leaves with _exit so gtest's state in it never runs.
inline Child fork_child(std::function<int(std::string&)> body) {
  int p[2];
  if (pipe(p) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    std::string msg;
    int code = 1;
    try {
      code = body(msg);
    } catch (const std::exception& e) {
      msg = std::string("uncaught: ") + e.what();
      code = 2;
    }
    size_t off = 0;
    while (off < msg.size()) {
      ssize_t w = write(p[1], msg.data() + off, msg.size() - off);
      if (w <= 0) break;
      off += size_t(w);
    }
    close(p[1]);
    _exit(code);
  }
  close(p[1]);
  return {pid, p[0]};
}

inline ChildResult wait_child(Child c, int timeout_ms = 15000) {
  ChildResult r;
  auto t0 = std::chrono::steady_clock::now();
  auto left = [&] {
    return timeout_ms - int(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - t0).count());
  };
  char buf[4096];
  for (;;) {
    pollfd pfd{c.fd, POLLIN, 0};
    int ms = left();
    if (ms <= 0 || poll(&pfd, 1, ms) <= 0) {
      r.timed_out = true;
      kill(c.pid, SIGKILL);
      break;
    }
    ssize_t n = read(c.fd, buf, sizeof buf);
    if (n <= 0) break;
    r.message.append(buf, size_t(n));
  }
  close(c.fd);
  int status = 0;
  waitpid(c.pid, &status, 0);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

}  // namespace siesta::comm::test
