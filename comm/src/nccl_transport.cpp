// NCCL transport: a non-blocking communicator (ncclConfig_t::blocking = 0) whose every wait is
// a poll of ncclCommGetAsyncError with a deadline; past it, ncclCommAbort and a CommError. In a
// build without CUDA the constructor and make_unique_id say so.
#include "siesta/comm/nccl_transport.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "siesta/comm/error.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace siesta::comm {

#ifdef SIESTA_WITH_CUDA

namespace {
using Clock = std::chrono::steady_clock;

std::string nccl_text(ncclResult_t r, ncclComm_t comm) {
  std::string s = ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last && *last) s += " (" + std::string(last) + ")";
  return s;
}

void cuda_check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) throw CommError("NCCL transport: " + what + " failed: " + cudaGetErrorString(e));
}

// Spin briefly (a bucket takes tens of microseconds), then back off to a polite sleep.
void backoff(Clock::time_point start) {
  if (Clock::now() - start < std::chrono::milliseconds(2)) std::this_thread::yield();
  else std::this_thread::sleep_for(std::chrono::microseconds(100));
}
}  // namespace

struct NcclTransport::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // for the blocking broadcast() and barrier()
  cudaEvent_t event = nullptr;
  void* scratch = nullptr;        // bounce buffer for host-memory broadcasts
  size_t scratch_bytes = 0;
  bool ready = false;
};

NcclUniqueId make_unique_id() {
  ncclUniqueId id;
  ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess)
    throw CommError(std::string("NCCL transport: ncclGetUniqueId failed: ") + ncclGetErrorString(r));
  NcclUniqueId out;
  static_assert(sizeof(id) == sizeof(out));
  std::memcpy(out.data(), &id, sizeof id);
  return out;
}

NcclTransport::NcclTransport(const NcclUniqueId& id, int rank, int world, int cuda_device,
                             NcclOptions opts)
    : rank_(rank), world_(world), cuda_device_(cuda_device), opts_(opts), s_(new State) {
  if (world < 1 || rank < 0 || rank >= world)
    throw CommError("NCCL transport: rank " + std::to_string(rank) + " of world " +
                    std::to_string(world) + " (allowed: 0 <= rank < world, world >= 1)");
  // NVLink SHARP (NVLS) multicast is off unless the environment explicitly asks for it.
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  cuda_check(cudaSetDevice(cuda_device), "cudaSetDevice(" + std::to_string(cuda_device) + ")");
  cuda_check(cudaStreamCreateWithFlags(&s_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda_check(cudaEventCreateWithFlags(&s_->event, cudaEventDisableTiming), "cudaEventCreate");
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;  // init and collectives return at once; we poll with a deadline
  ncclUniqueId uid;
  std::memcpy(&uid, id.data(), sizeof uid);
  ncclResult_t r = ncclCommInitRankConfig(&s_->comm, world, uid, rank, &cfg);
  if (r != ncclSuccess && r != ncclInProgress) {
    std::string why = "NCCL transport: ncclCommInitRankConfig(rank " + std::to_string(rank) +
                      " of " + std::to_string(world) + ") failed: " + nccl_text(r, s_->comm);
    abort(why);
    throw CommError(why);
  }
}

NcclTransport::~NcclTransport() {
  if (s_->comm) {
    ncclResult_t st = ncclSuccess;
    ncclCommGetAsyncError(s_->comm, &st);
    if (s_->ready && st == ncclSuccess && ncclCommFinalize(s_->comm) != ncclSuccess) {
      // Non-blocking finalize: poll until flushed, bounded like everything else.
      auto t0 = Clock::now();
      do {
        ncclCommGetAsyncError(s_->comm, &st);
        if (st != ncclInProgress) break;
        backoff(t0);
      } while (Clock::now() - t0 < std::chrono::milliseconds(opts_.timeout_ms));
    }
    if (s_->ready && st == ncclSuccess) ncclCommDestroy(s_->comm);
    else ncclCommAbort(s_->comm);
  }
  if (s_->scratch) cudaFree(s_->scratch);
  if (s_->event) cudaEventDestroy(s_->event);
  if (s_->stream) cudaStreamDestroy(s_->stream);
}

void NcclTransport::check_usable() const {
  if (aborted()) throw CommError("NCCL transport: used after abort (" + abort_reason_ + ")");
}

void NcclTransport::abort(const std::string& reason) noexcept {
  if (aborted()) return;
  abort_reason_ = reason.empty() ? "aborted" : reason;
  if (s_->comm) {
    // Stops NCCL's kernels and proxy threads; peers then see their own collectives fail or time out.
    ncclCommAbort(s_->comm);
    s_->comm = nullptr;
  }
}

void NcclTransport::wait_ready() {
  check_usable();
  if (s_->ready) return;
  auto t0 = Clock::now();
  for (;;) {
    ncclResult_t st = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(s_->comm, &st);
    if (r != ncclSuccess) st = r;
    if (st == ncclSuccess) break;
    if (st != ncclInProgress) {
      std::string why = "NCCL transport: creating the communicator (rank " + std::to_string(rank_) +
                        " of " + std::to_string(world_) + ") failed: " + nccl_text(st, s_->comm);
      abort(why);
      throw CommError(why);
    }
    if (Clock::now() - t0 > std::chrono::milliseconds(opts_.timeout_ms)) {
      std::string why = "NCCL transport: rank " + std::to_string(rank_) + " of " +
                        std::to_string(world_) + " waited " + std::to_string(opts_.timeout_ms) +
                        " ms for the communicator to form; a peer never joined (or is gone), "
                        "so the communicator was aborted";
      abort(why);
      throw CommError(why);
    }
    backoff(t0);
  }
  s_->ready = true;
}

void NcclTransport::broadcast_on_stream(void* data, size_t bytes, int root, void* stream) {
  wait_ready();
  if (root < 0 || root >= world_)
    throw CommError("NCCL transport: broadcast root " + std::to_string(root) + " (allowed 0.." +
                    std::to_string(world_ - 1) + ")");
  cuda_check(cudaSetDevice(cuda_device_), "cudaSetDevice");
  ncclResult_t r = ncclBroadcast(data, data, bytes, ncclUint8, root, s_->comm,
                                 static_cast<cudaStream_t>(stream));
  // Non-blocking communicators may report the enqueue as in progress; it must settle before
  // the next NCCL call.
  auto t0 = Clock::now();
  while (r == ncclInProgress) {
    ncclResult_t st = ncclSuccess;
    ncclCommGetAsyncError(s_->comm, &st);
    r = st;
    if (r == ncclInProgress && Clock::now() - t0 > std::chrono::milliseconds(opts_.timeout_ms))
      break;
    if (r == ncclInProgress) backoff(t0);
  }
  if (r != ncclSuccess) {
    std::string why = "NCCL transport: ncclBroadcast of " + std::to_string(bytes) +
                      " bytes from root " + std::to_string(root) + " on rank " +
                      std::to_string(rank_) + " failed: " + nccl_text(r, s_->comm);
    abort(why);
    throw CommError(why);
  }
}

void NcclTransport::wait_event(void* ev, const std::string& what) {
  check_usable();
  auto event = static_cast<cudaEvent_t>(ev);
  auto t0 = Clock::now();
  for (;;) {
    cudaError_t q = cudaEventQuery(event);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) {
      std::string why = "NCCL transport: waiting for " + what + " on rank " +
                        std::to_string(rank_) + ": CUDA error " + cudaGetErrorString(q);
      abort(why);
      throw CommError(why);
    }
    ncclResult_t st = ncclSuccess;
    ncclCommGetAsyncError(s_->comm, &st);
    if (st != ncclSuccess && st != ncclInProgress) {
      std::string why = "NCCL transport: " + what + " on rank " + std::to_string(rank_) +
                        " failed: NCCL reports " + nccl_text(st, s_->comm) +
                        "; communicator aborted";
      abort(why);
      throw CommError(why);
    }
    if (Clock::now() - t0 > std::chrono::milliseconds(opts_.timeout_ms)) {
      std::string why = "NCCL transport: " + what + " on rank " + std::to_string(rank_) + " of " +
                        std::to_string(world_) + " did not finish within " +
                        std::to_string(opts_.timeout_ms) +
                        " ms (a peer is gone or stuck); communicator aborted";
      abort(why);
      throw CommError(why);
    }
    backoff(t0);
  }
}

void NcclTransport::broadcast(void* data, size_t bytes, int root, Device where) {
  check_usable();
  if (where.is_cuda()) {
    broadcast_on_stream(data, bytes, root, s_->stream);
    cuda_check(cudaEventRecord(s_->event, s_->stream), "cudaEventRecord");
    wait_event(s_->event, "broadcast of " + std::to_string(bytes) + " bytes");
    return;
  }
  // With one rank the root's bytes are already everywhere they need to be.
  if (world_ == 1) {
    wait_ready();
    return;
  }
  // Host memory: bounce through a device buffer, in chunks of at most 64 MiB.
  const size_t chunk = std::min<size_t>(std::max<size_t>(bytes, 256), 64ull << 20);
  if (s_->scratch_bytes < chunk) {
    cuda_check(cudaSetDevice(cuda_device_), "cudaSetDevice");
    if (s_->scratch) cuda_check(cudaFree(s_->scratch), "cudaFree");
    s_->scratch = nullptr;
    cuda_check(cudaMalloc(&s_->scratch, chunk), "cudaMalloc of a bounce buffer");
    s_->scratch_bytes = chunk;
  }
  auto* p = static_cast<char*>(data);
  for (size_t off = 0; off < bytes || (bytes == 0 && off == 0); off += chunk) {
    size_t len = std::min(chunk, bytes - off);
    if (rank_ == root && len)
      cuda_check(cudaMemcpyAsync(s_->scratch, p + off, len, cudaMemcpyHostToDevice, s_->stream),
                 "cudaMemcpyAsync (bounce in)");
    broadcast_on_stream(s_->scratch, len, root, s_->stream);
    if (rank_ != root && len)
      cuda_check(cudaMemcpyAsync(p + off, s_->scratch, len, cudaMemcpyDeviceToHost, s_->stream),
                 "cudaMemcpyAsync (bounce out)");
    cuda_check(cudaEventRecord(s_->event, s_->stream), "cudaEventRecord");
    wait_event(s_->event, "broadcast of " + std::to_string(bytes) + " host bytes");
    if (bytes == 0) break;
  }
}

void NcclTransport::barrier() {
  // NCCL has no barrier: a one-element all-reduce cannot finish before every rank joined it.
  wait_ready();
  if (s_->scratch_bytes < 256) {
    std::byte b{};
    broadcast(&b, 1, 0, Device::cpu());  // allocates the scratch buffer
  }
  ncclResult_t r = ncclAllReduce(s_->scratch, s_->scratch, 1, ncclInt32, ncclSum, s_->comm, s_->stream);
  auto t0 = Clock::now();
  while (r == ncclInProgress && Clock::now() - t0 < std::chrono::milliseconds(opts_.timeout_ms)) {
    ncclResult_t st = ncclSuccess;
    ncclCommGetAsyncError(s_->comm, &st);
    r = st;
    if (r == ncclInProgress) backoff(t0);
  }
  if (r != ncclSuccess) {
    std::string why = "NCCL transport: barrier on rank " + std::to_string(rank_) + " failed: " +
                      nccl_text(r, s_->comm);
    abort(why);
    throw CommError(why);
  }
  cuda_check(cudaEventRecord(s_->event, s_->stream), "cudaEventRecord");
  wait_event(s_->event, "barrier");
}

#else  // CPU-only build

struct NcclTransport::State {};

NcclUniqueId make_unique_id() {
  throw CommError("NCCL transport: this build has no CUDA (configure with -DSIESTA_CUDA=ON); "
                  "CPU runs use HostTransport");
}
NcclTransport::NcclTransport(const NcclUniqueId&, int, int, int, NcclOptions) {
  throw CommError("NCCL transport: this build has no CUDA (configure with -DSIESTA_CUDA=ON); "
                  "CPU runs use HostTransport");
}
NcclTransport::~NcclTransport() = default;
void NcclTransport::broadcast(void*, size_t, int, Device) {}
void NcclTransport::barrier() {}
void NcclTransport::abort(const std::string&) noexcept {}
void NcclTransport::broadcast_on_stream(void*, size_t, int, void*) {}
void NcclTransport::wait_event(void*, const std::string&) {}

#endif

}  // namespace siesta::comm
