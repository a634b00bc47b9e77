// Public header of siesta::comm: weight transport (NCCL on GPUs, a host transport on CPUs) and
// the bucketed weight-sync protocol that moves new weights from the trainer into the engines.
#pragma once

#include "siesta/comm/error.hpp"
#include "siesta/comm/host_transport.hpp"
#include "siesta/comm/nccl_info.hpp"
#include "siesta/comm/nccl_transport.hpp"
#include "siesta/comm/transport.hpp"
#include "siesta/comm/weight_sync.hpp"
