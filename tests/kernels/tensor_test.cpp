#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "siesta/kernels/tensor.hpp"

using namespace siesta;

TEST(DType, NamesRoundTripAndUnknownNameListsAllowed) {
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::I32, DType::I64})
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  try {
    dtype_from_name("F8");
    FAIL() << "F8 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("allowed: F32, BF16"), std::string::npos);
  }
}

TEST(Bf16, RoundsToNearestEvenAndKeepsNan) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-2.5f)), -2.5f);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(F16, RoundTripsNormalsSubnormalsAndInfinity) {
  for (float f : {0.0f, 1.0f, -3.140625f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f})
    EXPECT_EQ(f16_to_f32(f32_to_f16(f)), f) << f;
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
}

TEST(ConvertHost, Bf16ToF32AndBack) {
  float src[3] = {1.5f, -0.25f, 1024.0f};
  uint16_t mid[3];
  float back[3];
  convert_host(src, DType::F32, mid, DType::BF16, 3);
  convert_host(mid, DType::BF16, back, DType::F32, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(back[i], src[i]);
}

TEST(TensorView, BytesFollowShapeAndDtype) {
  TensorView t{nullptr, DType::BF16, {4, 8}, Device::cpu()};
  EXPECT_EQ(t.numel(), 32);
  EXPECT_EQ(t.bytes(), 64u);
  EXPECT_EQ(shape_str(t.shape), "[4, 8]");
  EXPECT_EQ(Device::cuda(1).str(), "cuda:1");
}
