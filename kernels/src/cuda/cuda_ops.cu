// CudaOps lifetime (stream, cuBLAS handle and workspace, per device), memory movement and
// dtype conversion; make_cuda_ops.
#include <cuda_fp16.h>

#include <algorithm>
#include <memory>
#include <string>

#include "common.cuh"
#include "cuda_ops.hpp"
#include "pdl.cuh"

namespace siesta::kernels {

std::unique_ptr<Ops> make_cuda_ops(int device) { return std::make_unique<cuda::CudaOps>(device); }

namespace cuda {

Scratch::~Scratch() {
  if (ptr_) cudaFree(ptr_);  // destructor: nothing useful to do with an error here
}

void* Scratch::get(size_t bytes, cudaStream_t stream) {
  if (bytes <= bytes_) return ptr_;
  if (ptr_) {
    SIESTA_CUDA_CHECK(cudaStreamSynchronize(stream));
    SIESTA_CUDA_CHECK(cudaFree(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
  }
  SIESTA_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  bytes_ = bytes;
  return ptr_;
}

namespace {

// Page-locked host memory that every context sees (portable) and that kernels can address
// (mapped): the step-input copy kernel reads it, the sampling kernel writes results into it.
void* alloc_mapped_host(size_t bytes) {
  void* p = nullptr;
  SIESTA_CUDA_CHECK(cudaHostAlloc(&p, std::max<size_t>(bytes, 1),
                                  cudaHostAllocPortable | cudaHostAllocMapped));
  return p;
}

}  // namespace

HostScratch::~HostScratch() {
  if (ptr_) cudaFreeHost(ptr_);  // destructor: nothing useful to do with an error here
}

void* HostScratch::get(size_t bytes) {
  if (bytes <= bytes_) return ptr_;
  if (ptr_) {
    SIESTA_CUDA_CHECK(cudaFreeHost(ptr_));
    ptr_ = dev_ = nullptr;
    bytes_ = 0;
  }
  ptr_ = alloc_mapped_host(bytes);
  SIESTA_CUDA_CHECK(cudaHostGetDevicePointer(&dev_, ptr_, 0));
  bytes_ = bytes;
  return ptr_;
}

CudaOps::CudaOps(int device) : device_(device) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw KernelError("make_cuda_ops(" + std::to_string(device) + "): no usable CUDA driver (" +
                      cudaGetErrorString(e) + ")");
  }
  if (device < 0 || device >= count)
    throw KernelError("make_cuda_ops(" + std::to_string(device) + "): device index out of range (" +
                      std::to_string(count) + " CUDA devices visible)");
  SIESTA_CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp p{};
  SIESTA_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  if (p.major < 8)
    throw KernelError("make_cuda_ops(" + std::to_string(device) + "): " + p.name +
                      " has compute capability " + std::to_string(p.major) + "." +
                      std::to_string(p.minor) + "; bf16 kernels need 8.0 or newer (built for 9.0)");
  sm_count_ = p.multiProcessorCount;
  max_smem_optin_ = p.sharedMemPerBlockOptin;
  hopper_ = p.major >= 9;
  SIESTA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  SIESTA_CUBLAS_CHECK(cublasCreate(&cublas_));
  SIESTA_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  // One workspace for the handle's lifetime: cuBLAS would otherwise allocate per stream.
  SIESTA_CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes));
  SIESTA_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes));
  // decode_layers' counters start at zero, and each launch leaves them at zero.
  SIESTA_CUDA_CHECK(cudaMalloc(&step_sync_, kStepSyncCounters * sizeof(unsigned)));
  SIESTA_CUDA_CHECK(cudaMemset(step_sync_, 0, kStepSyncCounters * sizeof(unsigned)));
}

CudaOps::~CudaOps() {
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  if (cublas_) cublasDestroy(cublas_);
  if (cublas_workspace_) cudaFree(cublas_workspace_);
  if (step_sync_) cudaFree(step_sync_);
  for (SampleSlot& s : sample_slots_)
    if (s.done) cudaEventDestroy(s.done);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaOps::activate() const { SIESTA_CUDA_CHECK(cudaSetDevice(device_)); }

void CudaOps::synchronize() {
  activate();
  SIESTA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// Host copies return only when the host buffer may be reused (pageable memory makes the
// runtime stage them anyway).
void CudaOps::copy_to_device(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  copy_to_device_queued(dst, host_src, bytes);
  SIESTA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaOps::copy_to_device_queued(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  activate();
  SIESTA_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaOps::copy_to_host(void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  activate();
  SIESTA_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  SIESTA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

std::shared_ptr<void> CudaOps::host_buffer(size_t bytes) {
  activate();
  return std::shared_ptr<void>(alloc_mapped_host(bytes), [](void* q) { cudaFreeHost(q); });
}

namespace {

// 32-bit words from mapped host memory into device memory, one thread per word.
__global__ void copy_words_kernel(uint32_t* __restrict__ dst, const uint32_t* __restrict__ src,
                                  size_t n) {
  pdl_launch_dependents();
  pdl_wait();  // dst may still be read by the kernel before
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

}  // namespace

void CudaOps::copy_host_buffer_to_device_queued(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  require(bytes % 4 == 0 && reinterpret_cast<uintptr_t>(dst) % 4 == 0 &&
              reinterpret_cast<uintptr_t>(src) % 4 == 0,
          "copy_host_buffer_to_device_queued: bytes and both addresses must be multiples of 4");
  activate();
  void* src_dev = nullptr;
  // A host_buffer() is mapped; anything else is refused here rather than read as garbage.
  if (cudaHostGetDevicePointer(&src_dev, const_cast<void*>(src), 0) != cudaSuccess) {
    cudaGetLastError();
    throw KernelError("copy_host_buffer_to_device_queued: the source is not a host_buffer() "
                      "of this backend (page-locked and mapped)");
  }
  const size_t words = bytes / 4;
  const dim3 grid(unsigned(std::min<size_t>((words + 255) / 256, 256)));
  auto* d = static_cast<uint32_t*>(dst);
  auto* sp = static_cast<const uint32_t*>(src_dev);
  // With PDL it launches while the sampling kernel before it runs (a decode step's metadata
  // after the previous draw): on an H200, batch 8 / 64 decode steps 1.30 -> 1.25 / 1.88 ->
  // 1.72 ms. A batch of one sequence measured slower that way; up to 64 words (one or two
  // sequences; two were not measured) the launch stays plain.
  launch_pdl_if(hopper_ && words > 64 && step_input_pdl_enabled(), copy_words_kernel, grid,
                dim3(256), 0, stream_, d, sp, words);
}

void CudaOps::copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  activate();
  SIESTA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaOps::fill_zero(void* dst, size_t bytes) {
  if (bytes == 0) return;
  activate();
  SIESTA_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_));
}

namespace {

template <class T> __device__ __forceinline__ float load_as_f(const T* p, int64_t i);
template <> __device__ __forceinline__ float load_as_f<float>(const float* p, int64_t i) {
  return p[i];
}
template <> __device__ __forceinline__ float load_as_f<bf16>(const bf16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
template <> __device__ __forceinline__ float load_as_f<__half>(const __half* p, int64_t i) {
  return __half2float(p[i]);
}
template <class T> __device__ __forceinline__ void store_from_f(T* p, int64_t i, float v);
template <> __device__ __forceinline__ void store_from_f<float>(float* p, int64_t i, float v) {
  p[i] = v;
}
template <> __device__ __forceinline__ void store_from_f<bf16>(bf16* p, int64_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ void store_from_f<__half>(__half* p, int64_t i, float v) {
  p[i] = __float2half_rn(v);
}

template <class D, class S>
__global__ void convert_kernel(D* __restrict__ dst, const S* __restrict__ src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store_from_f(dst, i, load_as_f(src, i));
}

template <class D, class S>
void launch_convert(void* dst, const void* src, int64_t n, int sms, cudaStream_t st) {
  const int threads = 256;
  convert_kernel<D, S><<<grid_for(n, threads, int64_t(sms) * 16), threads, 0, st>>>(
      static_cast<D*>(dst), static_cast<const S*>(src), n);
  SIESTA_CUDA_LAUNCH_CHECK();
}

template <class D>
void launch_convert_from(void* dst, const void* src, DType src_t, int64_t n, int sms,
                         cudaStream_t st) {
  switch (src_t) {
    case DType::F32: return launch_convert<D, float>(dst, src, n, sms, st);
    case DType::BF16: return launch_convert<D, bf16>(dst, src, n, sms, st);
    case DType::F16: return launch_convert<D, __half>(dst, src, n, sms, st);
    default: break;
  }
  throw KernelError(std::string("cuda convert: source dtype ") + std::string(dtype_name(src_t)) +
                    " is not supported (allowed: F32, BF16, F16)");
}

}  // namespace

void CudaOps::convert(void* dst, DType dst_t, const void* src, DType src_t, int64_t n) {
  if (n <= 0) return;
  activate();
  if (dst_t == src_t && (dst_t == DType::F32 || dst_t == DType::BF16 || dst_t == DType::F16)) {
    copy_on_device(dst, src, size_t(n) * dtype_size(dst_t));
    return;
  }
  switch (dst_t) {
    case DType::F32: return launch_convert_from<float>(dst, src, src_t, n, sm_count_, stream_);
    case DType::BF16: return launch_convert_from<bf16>(dst, src, src_t, n, sm_count_, stream_);
    case DType::F16: return launch_convert_from<__half>(dst, src, src_t, n, sm_count_, stream_);
    default: break;
  }
  throw KernelError(std::string("cuda convert: target dtype ") + std::string(dtype_name(dst_t)) +
                    " is not supported (allowed: F32, BF16, F16)");
}

}  // namespace cuda
}  // namespace siesta::kernels
