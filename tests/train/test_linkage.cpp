// The core's file operations inside a program linked with libtorch. libtorch builds export their own
// copies of std::filesystem functions, which the dynamic linker binds in place of libstdc++'s; one of
// them (remove_all, as built into PyTorch 2.11's libtorch.so) calls a symbol that is missing from
// older libstdc++ and crashes. sluice deletes files with its own POSIX helpers: these tests run them
// in this torch-linked binary, and the CLI's failing prep through the torch-linked `sluice`.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "sluice/io.hpp"
#include "train_util.hpp"
#include "util/fs_ops.hpp"

namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

TEST(TorchLinkage, AbandonedOutputIsRemovedWithoutCrashing) {
  sluice_train_test::TempDir dir("linkage");
  const std::string out = (dir.path / "out").string();
  std::string tmp;
  {
    sluice::AtomicDir d(out, false);
    tmp = d.path();
    sluice::fsops::make_dirs(d.file("a/b"));
    std::FILE* f = std::fopen(d.file("a/b/x.npy").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("data", f);
    std::fclose(f);
  }
  EXPECT_FALSE(exists(tmp));
  EXPECT_FALSE(exists(out));
}

TEST(TorchLinkage, FailingPrepPrintsItsErrorThroughTheTorchLinkedBinary) {
  sluice_train_test::TempDir dir("linkage");
  const std::string bad = (dir.path / "bad.tsv").string();
  std::FILE* f = std::fopen(bad.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("1\t2\n", f);
  std::fclose(f);
  const std::string log = (dir.path / "log").string();
  const std::string cmd = std::string("'") + SLUICE_BINARY + "' prep --engine cpu -o '" + (dir.path / "out").string() +
                          "' '" + bad + "' > '" + log + "' 2>&1";
  const int st = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(st)) << "the binary died of a signal";
  EXPECT_EQ(WEXITSTATUS(st), 1);
  std::FILE* l = std::fopen(log.c_str(), "rb");
  ASSERT_NE(l, nullptr);
  char buf[4096] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, l);
  std::fclose(l);
  const std::string text(buf, n);
  EXPECT_NE(text.find("bad.tsv:1: wrong number of fields"), std::string::npos) << text;
}

}  // namespace
