// Public header of siesta::kernels: tensors, device queries and the op table (CPU + CUDA).
#pragma once

#include "siesta/kernels/device.hpp"
#include "siesta/kernels/error.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/kernels/tensor.hpp"
