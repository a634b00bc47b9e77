// Atomic checkpoint files: round trip, corruption and mismatch detection, no temp files left.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "siesta/train/checkpoint_file.hpp"
#include "siesta/train/error.hpp"

using namespace siesta::train;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("siesta_ckpt_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

SectionSource vec_section(const std::string& name, const std::vector<float>& v) {
  return {name, v.size() * sizeof(float), [&v](uint64_t off, void* dst, size_t n) {
            std::memcpy(dst, reinterpret_cast<const char*>(v.data()) + off, n);
          }};
}

std::string expect_error(const fs::path& p) {
  try {
    CheckpointReader r(p);
    r.verify();
  } catch (const TrainError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(CheckpointFile, RoundTripsMetaAndSections) {
  auto d = temp_dir("rt");
  std::vector<float> a(1000), b(37);
  std::iota(a.begin(), a.end(), 0.5f);
  std::iota(b.begin(), b.end(), -3.f);
  CheckpointMeta m{.config_hash = 77, .step = 12, .rng = {1, 2, 3, 4}, .data_position = 99,
                   .extra = "{\"phase\":\"grpo\"}"};
  write_checkpoint(d / "c.ckpt", m, {vec_section("a", a), vec_section("b", b)});
  // Only the final file remains: the temporary was renamed onto it.
  EXPECT_EQ(std::distance(fs::directory_iterator(d), fs::directory_iterator()), 1);
  CheckpointReader r(d / "c.ckpt");
  EXPECT_EQ(r.meta().config_hash, 77u);
  EXPECT_EQ(r.meta().step, 12u);
  EXPECT_EQ(r.meta().rng[3], 4u);
  EXPECT_EQ(r.meta().data_position, 99u);
  EXPECT_EQ(r.meta().extra, "{\"phase\":\"grpo\"}");
  r.verify();
  std::vector<float> a2(1000), b2(37);
  r.read_section("a", a2.data(), a2.size() * 4);
  r.read_section("b", b2.data(), b2.size() * 4);
  EXPECT_EQ(a, a2);
  EXPECT_EQ(b, b2);
  EXPECT_THROW(r.read_section("c", nullptr, 0), TrainError);
  EXPECT_THROW(r.read_section("a", a2.data(), 4), TrainError);
  EXPECT_NO_THROW(r.expect_config_hash(77, "test"));
  EXPECT_THROW(r.expect_config_hash(78, "test"), TrainError);
  fs::remove_all(d);
}

TEST(CheckpointFile, OverwriteReplacesTheOldCheckpointWhole) {
  auto d = temp_dir("ow");
  std::vector<float> a(10, 1.f), b(20, 2.f);
  write_checkpoint(d / "c.ckpt", {.step = 1}, {vec_section("x", a)});
  write_checkpoint(d / "c.ckpt", {.step = 2}, {vec_section("x", b)});
  CheckpointReader r(d / "c.ckpt");
  EXPECT_EQ(r.meta().step, 2u);
  EXPECT_EQ(r.section_bytes("x"), 80u);
  fs::remove_all(d);
}

TEST(CheckpointFile, CorruptTruncatedAndForeignFilesAreRefused) {
  auto d = temp_dir("bad");
  std::vector<float> a(4096);
  std::iota(a.begin(), a.end(), 1.f);
  write_checkpoint(d / "c.ckpt", {.step = 3}, {vec_section("a", a)});
  const auto size = fs::file_size(d / "c.ckpt");

  fs::copy_file(d / "c.ckpt", d / "flip.ckpt");
  {
    std::fstream f(d / "flip.ckpt", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1000);
    char c = 0x5a;
    f.write(&c, 1);
  }
  EXPECT_NE(expect_error(d / "flip.ckpt").find("section 'a' checksum mismatch"), std::string::npos)
      << expect_error(d / "flip.ckpt");

  fs::copy_file(d / "c.ckpt", d / "short.ckpt");
  fs::resize_file(d / "short.ckpt", size - 10);
  EXPECT_NE(expect_error(d / "short.ckpt").find("truncated"), std::string::npos)
      << expect_error(d / "short.ckpt");

  { std::ofstream(d / "text.ckpt") << "this is not a checkpoint file at all, just some text"; }
  EXPECT_NE(expect_error(d / "text.ckpt").find("magic"), std::string::npos);

  EXPECT_NE(expect_error(d / "missing.ckpt").find("opening checkpoint"), std::string::npos);

  // A file of the previous format (version 1: another parameter layout) is refused by name,
  // and left as it is.
  fs::copy_file(d / "c.ckpt", d / "v1.ckpt");
  {
    std::fstream f(d / "v1.ckpt", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    const uint32_t v1 = 1;
    f.write(reinterpret_cast<const char*>(&v1), sizeof v1);
  }
  const std::string v1_error = expect_error(d / "v1.ckpt");
  EXPECT_NE(v1_error.find("format version 1; this build reads version " +
                          std::to_string(kCheckpointVersion)),
            std::string::npos)
      << v1_error;
  EXPECT_EQ(fs::file_size(d / "v1.ckpt"), size);
  fs::remove_all(d);
}

TEST(Checksum, IsIndependentOfChunking) {
  std::vector<unsigned char> data(1001);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 7 + 3);
  Checksum whole;
  whole.update(data.data(), data.size());
  Checksum parts;
  size_t pos = 0;
  for (size_t step : {1, 5, 31, 32, 33, 64, 200}) {
    parts.update(data.data() + pos, step);
    pos += step;
  }
  parts.update(data.data() + pos, data.size() - pos);
  EXPECT_EQ(whole.digest(), parts.digest());
  data[500] ^= 1;
  Checksum flipped;
  flipped.update(data.data(), data.size());
  EXPECT_NE(whole.digest(), flipped.digest());
}
