#include "cuda_driver.hpp"

#include <cuda_runtime.h>

#include "siesta/allocator/error.hpp"

namespace siesta::allocator::cuda {

namespace {
template <class Fn>
void load(Fn& fn, const char* symbol) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  // 12000: the ABI of these entry points as of CUDA 12.0 (they date from 10.2 and are stable).
  cudaError_t e = cudaGetDriverEntryPointByVersion(symbol, &p, 12000, cudaEnableDefault, &q);
  if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !p)
    throw AllocatorError(std::string("CUDA driver entry point ") + symbol +
                         " is not available (" + cudaGetErrorString(e) + ", query result " +
                         std::to_string(int(q)) + "): the driver must support CUDA 12.0+ VMM");
  fn = reinterpret_cast<Fn>(p);
}
}  // namespace

const Driver& driver() {
  static const Driver d = [] {
    Driver x{};
    load(x.cuMemAddressReserve, "cuMemAddressReserve");
    load(x.cuMemAddressFree, "cuMemAddressFree");
    load(x.cuMemCreate, "cuMemCreate");
    load(x.cuMemRelease, "cuMemRelease");
    load(x.cuMemMap, "cuMemMap");
    load(x.cuMemUnmap, "cuMemUnmap");
    load(x.cuMemSetAccess, "cuMemSetAccess");
    load(x.cuMemGetAllocationGranularity, "cuMemGetAllocationGranularity");
    load(x.cuGetErrorName, "cuGetErrorName");
    return x;
  }();
  return d;
}

void check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return;
  const char* name = "unknown";
  if (driver().cuGetErrorName) driver().cuGetErrorName(r, &name);
  throw AllocatorError(std::string(what) + " failed: " + name + " (" + std::to_string(int(r)) +
                       ")");
}

void check_rt(int r, const char* what) {
  if (r == 0) return;
  auto e = cudaError_t(r);
  throw AllocatorError(std::string(what) + " failed: " + cudaGetErrorName(e) + " (" +
                       cudaGetErrorString(e) + ")");
}

CUmemAllocationProp device_prop(int device) {
  CUmemAllocationProp p{};
  p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  p.location.id = device;
  return p;
}

CUmemAccessDesc device_access(int device) {
  CUmemAccessDesc a{};
  a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  a.location.id = device;
  a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  return a;
}

}  // namespace siesta::allocator::cuda
