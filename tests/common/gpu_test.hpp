// GPU tests skip, with the reason, where no CUDA device is usable; they run on the GPU machine.
#pragma once

#include <gtest/gtest.h>

#include "siesta/kernels/device.hpp"

#define SIESTA_REQUIRE_GPU()                                                          \
  do {                                                                                \
    auto siesta_cs_ = ::siesta::kernels::cuda_status();                               \
    if (siesta_cs_.gpus.empty())                                                      \
      GTEST_SKIP() << "no CUDA GPU on this machine (" << siesta_cs_.error             \
                   << "); this test runs on the GPU machine";                         \
  } while (0)
