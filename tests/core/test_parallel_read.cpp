// ParallelRead (src/source/parallel_read.hpp): the bytes of any range of a file, with any number of
// threads, equal the file's; a range past the end of the file fails naming the file.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "sluice/source.hpp"
#include "source/parallel_read.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice_test;

namespace {

std::string write_random_file(const TempDir& dir, const std::string& name, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  const std::string path = (dir.path() / name).string();
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(n));
  return path;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST(ParallelRead, AnyRangeWithAnyThreadsEqualsTheFile) {
  TempDir dir("pread");
  const size_t n = (size_t{9} << 20) + 4097;  // pieces of 1 MiB and more, and a partial page
  const std::string path = write_random_file(dir, "a.bin", n, 11);
  const std::string want = slurp(path);
  ASSERT_EQ(want.size(), n);
  const std::vector<std::pair<uint64_t, size_t>> ranges = {
      {0, n}, {0, 1}, {1, n - 1}, {4095, (size_t{3} << 20) + 7}, {n - 5, 5}, {12345, (size_t{5} << 20) + 1}, {77, 0}};
  for (int threads : {1, 2, 3, 8}) {
    ParallelRead reader(threads);
    EXPECT_EQ(reader.threads(), threads);
    for (const auto& [off, len] : ranges) {
      std::vector<char> got(len + 2, '\x5a');
      reader.read(path, off, len, got.data() + 1);
      EXPECT_EQ(std::string(got.data() + 1, len), want.substr(off, len)) << threads << " threads, " << off << "+" << len;
      EXPECT_EQ(got[0], '\x5a');
      EXPECT_EQ(got[len + 1], '\x5a');  // nothing written outside the range
    }
  }
}

TEST(ParallelRead, AlignedReadsStartAtTheFirstPageAndReturnWhereTheRangeBegins) {
  TempDir dir("pread");
  const size_t n = (size_t{5} << 20) + 123;
  const std::string path = write_random_file(dir, "a.bin", n, 12);
  const std::string want = slurp(path);
  const std::vector<std::pair<uint64_t, size_t>> ranges = {
      {0, n}, {1, n - 1}, {4095, 2}, {4096, (size_t{3} << 20) + 7}, {8191, (size_t{2} << 20)}, {n - 5, 5}, {9000, 0}};
  for (int threads : {1, 3, 8}) {
    ParallelRead reader(threads);
    for (const auto& [off, len] : ranges) {
      const size_t lead = size_t(off % ParallelRead::kPage);
      std::vector<char> got(len + lead + 1, '\x5a');
      EXPECT_EQ(reader.read_aligned(path, off, len, got.data()), lead);
      EXPECT_EQ(std::string(got.data() + lead, len), want.substr(off, len)) << threads << " threads, " << off << "+" << len;
      // The page's bytes before the range come along; nothing is written past its end.
      if (len > 0) {
        EXPECT_EQ(std::string(got.data(), lead), want.substr(off - lead, lead));
      }
      EXPECT_EQ(got[len + lead], '\x5a');
    }
  }
}

TEST(ParallelRead, SwitchesFilesAndFailsPastTheEndNamingTheFile) {
  TempDir dir("pread");
  const std::string a = write_random_file(dir, "a.bin", 3 << 20, 1);
  const std::string b = write_random_file(dir, "b.bin", 100, 2);
  ParallelRead reader(4);
  std::vector<char> buf(3 << 20);
  reader.read(a, 0, buf.size(), buf.data());
  EXPECT_EQ(std::string(buf.data(), buf.size()), slurp(a));
  reader.read(b, 10, 90, buf.data());
  EXPECT_EQ(std::string(buf.data(), 90), slurp(b).substr(10));
  try {
    reader.read(b, 50, 51, buf.data());
    FAIL() << "a read past the end of the file succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(b), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ended"), std::string::npos) << e.what();
  }
  try {
    reader.read((dir.path() / "missing.bin").string(), 0, 1, buf.data());
    FAIL() << "reading a missing file succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.bin"), std::string::npos) << e.what();
  }
}
