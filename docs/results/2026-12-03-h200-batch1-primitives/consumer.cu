// Microbenchmark: how fast do the decode stream kernels' consumers work items that are already
// in shared memory, and how fast does the ring stream from L2? gate/up shapes of 0.5b (d 896,
// inter 4864), one token. Uses decode_stream.cuh's own producer/consumer code.
#include <cstdio>
#include <vector>
#include <cmath>
#include <algorithm>
#include "decode_stream.cuh"
using namespace siesta::kernels::cuda;

__device__ float g_sink;
__device__ unsigned long long g_clock[2];

template <int MODE>
__global__ void __launch_bounds__(kThreads, 1)
bench_kernel(GateUpPolicy<1> pol, Plan pl, const bf16* x, int reps) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ uint64_t full[kMaxSlots], empty[kMaxSlots];
  bf16* xs = reinterpret_cast<bf16*>(smem);
  const BlockUnits bu = BlockUnits::of(pl.units, pl.per_item);
  const Ring ring{reinterpret_cast<bf16*>(smem + pl.ring_off), full, empty, pl.slots,
                  2 * pl.per_item * pl.seg_len};
  RingPos pos;
  if (threadIdx.x == 0) ring.init_barriers();
  __syncthreads();
  const int k = pol.d;
  if (threadIdx.x / 32 == kConsumerWarps) {
    if (threadIdx.x % 32 == 0) {
      const int r_prod = MODE >= 2 ? 1 : reps;
      for (int r = 0; r < r_prod; ++r) produce_items(pol, pl, bu, k, ring, pos);
    }
    return;
  }
  for (int c = threadIdx.x; c < k / 8; c += kConsumers) store8(xs + c * 8, load8(x + c * 8));
  consumers_sync();
  if (MODE == 0) {  // the real consumer loop, bytes streamed from L2 by the producer
    for (int r = 0; r < reps; ++r) consume_items<1>(pol, pl, bu, 1, k, xs, ring, pos, nullptr);
    return;
  }
  if (MODE == 1) {  // waits and hand-backs only: the ring's streaming rate
    const int items = bu.groups() * pl.segs;
    for (int r = 0; r < reps; ++r)
      for (int j = 0; j < items; ++j) {
        mbar_wait(&ring.full[pos.s], pos.parity);
        __syncwarp();
        if (threadIdx.x % 32 == 0) mbar_arrive(&ring.empty[pos.s]);
        pos.advance(ring.slots);
      }
    return;
  }

  if (MODE == 3) {  // CUDA cores: two items at once, every load first, 4 accumulators a row
    const int items = bu.groups() * pl.segs;
    for (int j = 0; j < items; ++j) mbar_wait(&ring.full[j], 0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int half_slot = pl.per_item * pl.seg_len;
    Bf16x8 xr[kRegChunks];
#pragma unroll
    for (int i = 0; i < kRegChunks; ++i) {
      const int c = min(lane + i * 32, k / 8 - 1);
      xr[i] = lane + i * 32 < k / 8 ? load8(xs + c * 8) : Bf16x8{};
    }
    float acc = 0.f;
    for (int r = 0; r < reps; ++r)
      for (int j = 0; j < items; j += 2) {
        const int j2 = min(j + 1, items - 1);
        const bf16* rows[4] = {
            ring.base + int64_t(j) * ring.stride + int64_t(warp) * pl.seg_len,
            ring.base + int64_t(j) * ring.stride + half_slot + int64_t(warp) * pl.seg_len,
            ring.base + int64_t(j2) * ring.stride + int64_t(warp) * pl.seg_len,
            ring.base + int64_t(j2) * ring.stride + half_slot + int64_t(warp) * pl.seg_len};
        Bf16x8 w[4][kRegChunks];
#pragma unroll
        for (int q = 0; q < 4; ++q)
#pragma unroll
          for (int i = 0; i < kRegChunks; ++i)
            w[q][i] = load8(rows[q] + min(lane + i * 32, k / 8 - 1) * 8);
        float s[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          float p[kRegChunks];
#pragma unroll
          for (int i = 0; i < kRegChunks; ++i) {
            float fw[8], fx[8];
            unpack8(w[q][i], fw);
            unpack8(xr[i], fx);
            p[i] = 0.f;
#pragma unroll
            for (int e = 0; e < 8; ++e) p[i] += fw[e] * fx[e];
          }
          s[q] = (p[0] + p[1]) + (p[2] + p[3]);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
          for (int q = 0; q < 4; ++q) s[q] += __shfl_xor_sync(0xffffffffu, s[q], o);
        if (lane == 0) {
          for (int q = 0; q < 4; q += 2) {
            const float gv = round_bf(s[q]), uv = round_bf(s[q + 1]);
            acc += gv / (1.f + __expf(-gv)) * uv;
            const int u = bu.first_unit(q == 0 ? j : j2) + warp;
            if (r == 0 && u < bu.u1) pol.h[u] = to_bf(gv / (1.f + __expf(-gv)) * uv);
          }
        }
        __syncwarp();
      }
    if (lane == 0 && acc == 12345.f) g_sink = acc;
    return;
  }
  if (MODE == 4) {  // tensor cores: a warp takes every 8th k-step of an item's 16 x k tile
    const int items = bu.groups() * pl.segs;
    for (int j = 0; j < items; ++j) mbar_wait(&ring.full[j], 0);
    __shared__ float part4[kConsumerWarps][16];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int half_slot = pl.per_item * pl.seg_len;
    const int ksteps = k / 16;
    const int g = lane / 4, t = lane % 4;
    const int lr = (lane % 8) + 8 * ((lane / 8) % 2), lh = lane / 16;  // ldmatrix row, half
    float acc = 0.f;
    for (int r = 0; r < reps; ++r)
      for (int j = 0; j < items; ++j) {
        const bf16* slot = ring.base + int64_t(j) * ring.stride;
        const bf16* myrow = lr < 8 ? slot + int64_t(lr) * pl.seg_len
                                   : slot + half_slot + int64_t(lr - 8) * pl.seg_len;
        float c[4] = {0.f, 0.f, 0.f, 0.f};
        for (int s = warp; s < ksteps; s += kConsumerWarps) {
          const int ch = 2 * s + lh, blk = ch & ~7;
          const uint32_t addr = smem_addr(myrow + (blk + ((ch & 7) ^ (lr & 7))) * 8);
          uint32_t a0, a1, a2, a3;
          asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                       : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3) : "r"(addr));
          const int c0 = 2 * s, b0c = (c0 & ~7) + ((c0 & 7) ^ g), b1c = (c0 & ~7) + (((c0 + 1) & 7) ^ g);
          const uint32_t b0 = *reinterpret_cast<const uint32_t*>(xs + b0c * 8 + 2 * t);
          const uint32_t b1 = *reinterpret_cast<const uint32_t*>(xs + b1c * 8 + 2 * t);
          asm volatile(
              "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
              "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
              : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
              : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
        }
        if (t == g / 2) {
          part4[warp][g] = c[g % 2];
          part4[warp][g + 8] = c[2 + g % 2];
        }
        consumers_sync();
        if (threadIdx.x < 8) {
          float ga = 0.f, ub = 0.f;
          for (int w = 0; w < kConsumerWarps; ++w) ga += part4[w][threadIdx.x], ub += part4[w][threadIdx.x + 8];
          const float gv = round_bf(ga), uv = round_bf(ub);
          acc += gv / (1.f + __expf(-gv)) * uv;
          const int u = bu.first_unit(j) + threadIdx.x;
          if (r == 0 && u < bu.u1) pol.h[u] = to_bf(gv / (1.f + __expf(-gv)) * uv);
        }
        consumers_sync();
      }
    if (threadIdx.x < 8 && acc == 12345.f) g_sink = acc;
    return;
  }

  if (MODE == 5) {  // CUDA cores, sums kept per item and reduced across lanes once per op
    const int items = bu.groups() * pl.segs;  // <= 8 here
    for (int j = 0; j < items; ++j) mbar_wait(&ring.full[j], 0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int half_slot = pl.per_item * pl.seg_len;
    Bf16x8 xr[kRegChunks];
#pragma unroll
    for (int i = 0; i < kRegChunks; ++i) {
      const int c = lane + i * 32;
      xr[i] = c < k / 8 ? load8(xs + c * 8) : Bf16x8{};
    }
    float accum = 0.f;
    for (int r = 0; r < reps; ++r) {
      float v[16];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float a = 0.f, b = 0.f;
        if (j < items) {
          const bf16* ra = ring.base + int64_t(j) * ring.stride + int64_t(warp) * pl.seg_len;
          dot_regs(a, b, ra, ra + half_slot, xr, k / 8, lane, 32);
        }
        v[2 * j] = a, v[2 * j + 1] = b;
      }
      // transpose reduction: after it lane l holds the total of value (l >> 1) & 15
#pragma unroll
      for (int o = 16, n = 16; o >= 2; o >>= 1, n >>= 1) {
        const bool upper = lane & o;
#pragma unroll
        for (int i = 0; i < n / 2; ++i) {
          const float send = upper ? v[i] : v[i + n / 2];
          const float keep = upper ? v[i + n / 2] : v[i];
          v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
        }
      }
      float t = v[0] + __shfl_xor_sync(0xffffffffu, v[0], 1);
      const float ub = __shfl_down_sync(0xffffffffu, t, 2);
      const int j = lane >> 2;
      if ((lane & 3) == 0 && j < items) {
        const float gv = round_bf(t), uv = round_bf(ub);
        const float hv = gv / (1.f + __expf(-gv)) * uv;
        accum += hv;
        const int u = bu.first_unit(j) + warp;
        if (r == 0 && u < bu.u1) pol.h[u] = to_bf(hv);
      }
      __syncwarp();
    }
    if (accum == 12345.f) g_sink = accum;
    return;
  }
  // MODE 2: the items land once; then the consumers work them again and again, no waits
  const int items = bu.groups() * pl.segs;
  for (int j = 0; j < items; ++j) mbar_wait(&ring.full[j], 0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int half_slot = pl.per_item * pl.seg_len;
  Bf16x8 xr[kRegChunks];
#pragma unroll
  for (int i = 0; i < kRegChunks; ++i) {
    const int c = lane + i * 32;
    xr[i] = c < k / 8 ? load8(xs + c * 8) : Bf16x8{};
  }
  float acc = 0.f;
  unsigned long long c0 = clock64(), t0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  for (int r = 0; r < reps; ++r)
    for (int j = 0; j < items; ++j) {
      const bf16* ra = ring.base + int64_t(j) * ring.stride + int64_t(warp) * pl.seg_len;
      float a = 0.f, b = 0.f;
      dot_regs(a, b, ra, ra + half_slot, xr, k / 8, lane, 32);
      a = warp_sum(a), b = warp_sum(b);
      if (lane == 0) {
        const float gv = round_bf(a), uv = round_bf(b);
        acc += gv / (1.f + __expf(-gv)) * uv;
        const int u = bu.first_unit(j) + warp;
        if (r == 0 && u < bu.u1) pol.h[u] = to_bf(gv / (1.f + __expf(-gv)) * uv);
      }
      __syncwarp();
    }
  if (lane == 0 && acc == 12345.f) g_sink = acc;
  unsigned long long c1 = clock64(), t1;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
  if (blockIdx.x == 0 && threadIdx.x == 0) g_clock[0] = c1 - c0, g_clock[1] = t1 - t0;
}

int main() {
  const int d = 896, inter = 4864, reps = 200;
  int sms;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  bf16 *wg, *wu, *x, *h;
  cudaMalloc(&wg, size_t(inter) * d * 2);
  cudaMalloc(&wu, size_t(inter) * d * 2);
  cudaMalloc(&x, d * 2);
  cudaMalloc(&h, inter * 2);
  std::vector<bf16> hw(size_t(inter) * d);
  uint32_t st = 12345;
  for (size_t i = 0; i < hw.size(); ++i) {
    st = st * 1664525u + 1013904223u;
    hw[i] = __float2bfloat16(float(int(st >> 20) - 2048) / 2048.f);
  }
  cudaMemcpy(wg, hw.data(), hw.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(wu, hw.data(), hw.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(x, hw.data(), d * 2, cudaMemcpyHostToDevice);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int bps : {1, 2}) {
    unsigned blocks;
    size_t smem;
    Plan pl = make_plan(inter, d, 1, false, sms * bps, 0, 0, blocks, smem);
    const double bytes = 2.0 * inter * d * 2;
    std::printf("blocks %u (%d/SM), per_item %d, slots %d, smem %zu, items/block %.1f\n", blocks,
                bps, pl.per_item, pl.slots, smem, double(inter) / blocks / pl.per_item);
    GateUpPolicy<1> pol{h, wg, wu, d, inter};
    auto run = [&](auto kernel, const char* name, Plan pl, size_t smem) {
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
      for (int it = 0; it < 2; ++it) {
        cudaEventRecord(e0);
        kernel<<<blocks, kThreads, smem>>>(pol, pl, x, reps);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
      }
      float ms;
      cudaEventElapsedTime(&ms, e0, e1);
      const double us = ms * 1e3 / reps;
      std::printf("  %-44s %7.3f us per pass of gate/up (%.0f GB/s, %.1f GB/s per SM)  %s\n", name,
                  us, bytes / us / 1e3, bytes / us / 1e3 / sms, cudaGetErrorString(cudaGetLastError()));
    };
    run(bench_kernel<0>, "real consumer, bytes from L2", pl, smem);
    run(bench_kernel<1>, "waits + hand-backs only, bytes from L2", pl, smem);
    Plan p2 = pl;
    const int per_block = (inter + int(blocks) - 1) / int(blocks);
    p2.slots = (per_block + pl.per_item - 1) / pl.per_item;
    const size_t smem2 = pl.ring_off + size_t(p2.slots) * 4 * pl.per_item * pl.seg_len;
    std::printf("  resident: %d slots, smem %zu\n", p2.slots, smem2);
    std::vector<bf16> ref(inter), got(inter);
    auto compare = [&](const char* name) {
      cudaMemcpy(got.data(), h, inter * 2, cudaMemcpyDeviceToHost);
      double mx = 0, scale = 0;
      for (int i = 0; i < inter; ++i) {
        mx = std::max(mx, double(std::fabs(__bfloat162float(got[i]) - __bfloat162float(ref[i]))));
        scale = std::max(scale, double(std::fabs(__bfloat162float(ref[i]))));
      }
      std::printf("    %s: max |diff| %.4g (max |h| %.4g)\n", name, mx, scale);
    };
    cudaMemset(h, 0, inter * 2);
    run(bench_kernel<2>, "consumer math only (items resident)", p2, smem2);
    cudaMemcpy(ref.data(), h, inter * 2, cudaMemcpyDeviceToHost);
    unsigned long long clk[2];
    cudaMemcpyFromSymbol(clk, g_clock, sizeof(clk));
    std::printf("    SM clock during the math-only run: %.0f MHz (%llu cycles in %llu ns, block 0)\n",
                double(clk[0]) * 1e3 / double(clk[1]), clk[0], clk[1]);
    cudaMemset(h, 0, inter * 2);
    run(bench_kernel<3>, "  ILP cuda cores, two items at once (resident)", p2, smem2);
    compare("ILP vs reference");
    cudaMemset(h, 0, inter * 2);
    run(bench_kernel<4>, "  tensor cores, XOR rows (resident)", p2, smem2);
    compare("mma vs reference");
    cudaMemset(h, 0, inter * 2);
    run(bench_kernel<5>, "  one cross-lane reduction per op (resident)", p2, smem2);
    compare("deferred vs reference");
  }
}
