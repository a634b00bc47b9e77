// replace_file_atomically: the new content replaces the old whole; a writer that fails, or a
// folder that refuses the file, leaves the old content and no temporary behind, with an error
// naming the file.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "model_test_util.hpp"
#include "siesta/model/atomic_file.hpp"
#include "siesta/model/config.hpp"

namespace siesta::model {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

std::string read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

size_t entries(const fs::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

TEST(AtomicFile, ReplacesTheWholeContentAndLeavesNoTemporary) {
  TempDir dir("atomic-file");
  const fs::path p = dir.path / "state.json";
  replace_file_atomically(p, std::string(10000, 'a'));
  EXPECT_EQ(read(p), std::string(10000, 'a'));
  replace_file_atomically(p, "short");  // shorter than before: nothing of the old may remain
  EXPECT_EQ(read(p), "short");
  EXPECT_EQ(entries(dir.path), 1u);
}

TEST(AtomicFile, WritesInAnyOrderThroughTheDescriptor) {
  TempDir dir("atomic-file");
  const fs::path p = dir.path / "c.bin";
  replace_file_atomically(p, [](int fd, const fs::path& tmp) {
    write_all_at(fd, "world", 5, 6, tmp);  // the tail first, then the head (a checkpoint's preamble)
    write_all_at(fd, "hello ", 6, 0, tmp);
  });
  EXPECT_EQ(read(p), "hello world");
}

TEST(AtomicFile, AFailedWriterKeepsTheOldContent) {
  TempDir dir("atomic-file");
  const fs::path p = dir.path / "model.safetensors";
  replace_file_atomically(p, "old");
  EXPECT_THROW(replace_file_atomically(p,
                                       [](int fd, const fs::path& tmp) {
                                         write_all_at(fd, "new, half", 9, 0, tmp);
                                         throw std::runtime_error("writer died");
                                       }),
               std::runtime_error);
  EXPECT_EQ(read(p), "old");
  EXPECT_EQ(entries(dir.path), 1u);  // the temporary is gone
}

TEST(AtomicFile, AMissingFolderIsAnErrorNamingTheFile) {
  TempDir dir("atomic-file");
  const fs::path p = dir.path / "no-such-folder" / "config.json";
  try {
    replace_file_atomically(p, "{}");
    FAIL() << "no error for a file in a missing folder";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-folder"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
}

TEST(AtomicFile, WriteAllAtReportsARefusedWrite) {
  TempDir dir("atomic-file");
  const fs::path p = dir.path / "read-only";
  { std::ofstream(p) << "x"; }
  const int fd = ::open(p.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  try {
    write_all_at(fd, "y", 1, 0, p);
    FAIL() << "no error writing through a read-only descriptor";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
  }
  ::close(fd);
}

}  // namespace
}  // namespace siesta::model
