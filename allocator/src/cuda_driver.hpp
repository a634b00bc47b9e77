// The CUDA driver's virtual-memory entry points, fetched through the runtime
// (cudaGetDriverEntryPointByVersion) so that siesta never links libcuda: binaries start on
// machines without a driver, and the driver's own library is used where there is one.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <string>

namespace siesta::allocator::cuda {

struct Driver {
  CUresult (*cuMemAddressReserve)(CUdeviceptr*, size_t, size_t, CUdeviceptr, unsigned long long);
  CUresult (*cuMemAddressFree)(CUdeviceptr, size_t);
  CUresult (*cuMemCreate)(CUmemGenericAllocationHandle*, size_t, const CUmemAllocationProp*,
                          unsigned long long);
  CUresult (*cuMemRelease)(CUmemGenericAllocationHandle);
  CUresult (*cuMemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                       unsigned long long);
  CUresult (*cuMemUnmap)(CUdeviceptr, size_t);
  CUresult (*cuMemSetAccess)(CUdeviceptr, size_t, const CUmemAccessDesc*, size_t);
  CUresult (*cuMemGetAllocationGranularity)(size_t*, const CUmemAllocationProp*,
                                            CUmemAllocationGranularity_flags);
  CUresult (*cuGetErrorName)(CUresult, const char**);
};

// Loaded once; throws AllocatorError when the driver lacks an entry point.
const Driver& driver();

// Throws AllocatorError "<what> failed: CUDA_ERROR_... (<code>)" unless r is CUDA_SUCCESS.
void check(CUresult r, const char* what);
// Same for a runtime call.
void check_rt(int r, const char* what);

// Pinned device memory on `device`, the properties every siesta mapping uses.
CUmemAllocationProp device_prop(int device);
CUmemAccessDesc device_access(int device);

}  // namespace siesta::allocator::cuda
