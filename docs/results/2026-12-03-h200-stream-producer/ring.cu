// The decode stream kernels' ring on the LM head shape (151936 x 896, one token), from HBM:
// which side limits a block's streaming rate? Modes (real = decode_stream.cuh's code):
//   0 real producer, real consumers (GemvPolicy<1>)
//   1 real producer, consumers only wait and hand back
//   2 bare producer (one copy per half, pointers by arithmetic), real consumers
//   3 bare producer, consumers only wait and hand back
//   4 bare producer, one region per item (a and b halves back to back), bare consumers
#include <cstdio>
#include <cstdlib>
#include "decode_stream.cuh"
using namespace siesta::kernels::cuda;

template <int MODE>
__global__ void __launch_bounds__(kThreads, 1)
ring_kernel(GemvPolicy<1> pol, Plan pl, const bf16* x, int k) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ uint64_t full[kMaxSlots], empty[kMaxSlots];
  bf16* xs = reinterpret_cast<bf16*>(smem);
  const BlockUnits bu = BlockUnits::of(pl.units, pl.per_item);
  const Ring ring{reinterpret_cast<bf16*>(smem + pl.ring_off), full, empty, pl.slots,
                  2 * pl.per_item * pl.seg_len};
  RingPos pos;
  if (threadIdx.x == 0) ring.init_barriers();
  __syncthreads();
  const int items = bu.groups() * pl.segs, half_slot = pl.per_item * pl.seg_len;
  if (threadIdx.x / 32 == kConsumerWarps) {
    if (threadIdx.x % 32 != 0) return;
    if (MODE <= 1) { produce_items(pol, pl, bu, k, ring, pos); return; }
    for (int j = 0; j < items; ++j) {
      if (pos.used >= ring.slots) mbar_wait(&ring.empty[pos.s], pos.parity ^ 1);
      const int ub = bu.first_unit(j), cnt = min(pl.per_item, bu.u1 - ub);
      bf16* dst = ring.base + int64_t(pos.s) * ring.stride;
      mbar_arrive_expect_tx(&ring.full[pos.s], uint32_t(4 * k * cnt));
      if (MODE == 4) {
        bulk_load(dst, pol.w + int64_t(2 * ub) * k, uint32_t(4 * k * cnt), &ring.full[pos.s]);
      } else {
        const bf16 *ra, *rb;
        pol.rows(ub, ra, rb);
        bulk_load(dst, ra, uint32_t(2 * k * cnt), &ring.full[pos.s]);
        bulk_load(dst + half_slot, rb, uint32_t(2 * k * cnt), &ring.full[pos.s]);
      }
      pos.advance(ring.slots);
    }
    return;
  }
  for (int c = threadIdx.x; c < k / 8; c += kConsumers) store8(xs + c * 8, load8(x + c * 8));
  consumers_sync();
  if (MODE == 0 || MODE == 2) { consume_items<1>(pol, pl, bu, 1, k, xs, ring, pos, nullptr); return; }
  for (int j = 0; j < items; ++j) {
    mbar_wait(&ring.full[pos.s], pos.parity);
    __syncwarp();
    if (threadIdx.x % 32 == 0) mbar_arrive(&ring.empty[pos.s]);
    pos.advance(ring.slots);
  }
}

template <int MODE>
void run(const char* name, GemvPolicy<1> pol, Plan pl, unsigned blocks, size_t smem, const bf16* x, int k,
         bf16* w0, bf16* w1, double bytes) {
  cudaFuncSetAttribute(ring_kernel<MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  float best = 1e9;
  for (int rep = 0; rep < 8; ++rep) {
    pol.w = rep % 2 ? w1 : w0;
    cudaEventRecord(a);
    ring_kernel<MODE><<<blocks, kThreads, smem>>>(pol, pl, x, k);
    cudaEventRecord(b); cudaEventSynchronize(b);
    float ms; cudaEventElapsedTime(&ms, a, b);
    if (rep > 1 && ms < best) best = ms;
  }
  printf("%-62s %7.1f us %6.0f GB/s\n", name, best * 1e3, bytes / (best * 1e-3) / 1e9);
}

int main(int argc, char** argv) {
  const int n = 151936, k = 896;
  int sms = 0; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const size_t wb = size_t(n) * k * 2;
  bf16 *w0, *w1, *x, *y;
  cudaMalloc(&w0, wb); cudaMalloc(&w1, wb); cudaMalloc(&x, k * 2); cudaMalloc(&y, n * 2);
  cudaMemset(w0, 0, wb); cudaMemset(w1, 0, wb); cudaMemset(x, 0, k * 2);
  for (size_t ring_kib : {96, 192}) {
    unsigned blocks; size_t smem;
    #ifdef OLD
    const Plan pl = make_plan((n + 1) / 2, k, 1, false, sms, 0, 0, blocks, smem);
    if (ring_kib != 96) continue;
#else
    const Plan pl = make_plan((n + 1) / 2, k, 1, false, sms, 0, 0, blocks, smem, ring_kib * 1024);
#endif
    GemvPolicy<1> pol{y, n, w0, k, n, false};
    printf("ring %zu KiB: %d slots, per_item %d, blocks %u\n", ring_kib, pl.slots, pl.per_item, blocks);
    run<0>("0 real producer, real consumers", pol, pl, blocks, smem, x, k, w0, w1, double(wb));
    run<1>("1 real producer, bare consumers", pol, pl, blocks, smem, x, k, w0, w1, double(wb));
    run<2>("2 bare producer, real consumers", pol, pl, blocks, smem, x, k, w0, w1, double(wb));
    run<3>("3 bare producer, bare consumers", pol, pl, blocks, smem, x, k, w0, w1, double(wb));
    run<4>("4 bare producer, one region per item, bare consumers", pol, pl, blocks, smem, x, k, w0, w1, double(wb));
  }
  cudaError_t e = cudaDeviceSynchronize(); if (e) printf("error %s\n", cudaGetErrorString(e));
}
