// Public header of siesta::comm: weight transport (NCCL on GPUs, a host transport on CPUs).
#pragma once

#include "siesta/comm/nccl_info.hpp"
