// Output layouts that other trainers read as they are: Meta's --mlperf-bin-loader files (train, test
// and validation rows, the counts npz), npz archives, TorchRec's npy expectations; and the progress
// line's ETA for gzip inputs. The numpy checks run where a python3 with numpy is found.
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/dataset.hpp"
#include "sluice/io.hpp"
#include "sluice/prep.hpp"
#include "source/blocks.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice_test;
using nlohmann::json;

namespace {

constexpr size_t kRow = 160;  // bytes of one Meta binary row

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

PrepOptions opts_for(const std::vector<std::string>& inputs, const std::string& out) {
  PrepOptions o;
  o.inputs = inputs;
  o.out = out;
  o.threads = 2;
  o.chunk_bytes = 4096;  // several chunks even for the small sample
  return o;
}

// The first n lines of the sample, and the rest.
std::pair<std::string, std::string> split_sample(size_t n) {
  const auto lines = split_lines(read_file(sample_path()));
  std::string a, b;
  for (size_t i = 0; i < lines.size(); ++i) (i < n ? a : b) += lines[i] + "\n";
  return {a, b};
}

uint32_t le32(const std::string& s, size_t at) {
  uint32_t v;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}
uint16_t le16(const std::string& s, size_t at) {
  uint16_t v;
  std::memcpy(&v, s.data() + at, 2);
  return v;
}

// The members of a ZIP archive of stored members, read through its central directory, every header
// field checked against the local header and the member's CRC-32. Failures are test failures.
std::map<std::string, std::string> read_stored_zip(const std::string& z) {
  std::map<std::string, std::string> out;
  if (z.size() < 22) {
    ADD_FAILURE() << "archive too short";
    return out;
  }
  const size_t end = z.size() - 22;  // no archive comment
  EXPECT_EQ(le32(z, end), 0x06054b50u);
  const uint16_t n = le16(z, end + 10);
  EXPECT_EQ(le16(z, end + 8), n);
  const uint32_t cd_size = le32(z, end + 12), cd_off = le32(z, end + 16);
  EXPECT_EQ(size_t(cd_off) + cd_size, end);
  size_t at = cd_off;
  for (uint16_t i = 0; i < n; ++i) {
    if (at + 46 > end) {
      ADD_FAILURE() << "central directory overruns";
      return out;
    }
    EXPECT_EQ(le32(z, at), 0x02014b50u);
    EXPECT_EQ(le16(z, at + 10), 0) << "stored";
    const uint32_t crc = le32(z, at + 16), csize = le32(z, at + 20), usize = le32(z, at + 24);
    const uint16_t name_len = le16(z, at + 28), extra = le16(z, at + 30), comment = le16(z, at + 32);
    const uint32_t local = le32(z, at + 42);
    const std::string name = z.substr(at + 46, name_len);
    EXPECT_EQ(csize, usize);
    EXPECT_EQ(le32(z, local), 0x04034b50u);
    EXPECT_EQ(le16(z, local + 8), 0);
    EXPECT_EQ(le32(z, local + 14), crc);
    EXPECT_EQ(le32(z, local + 18), csize);
    EXPECT_EQ(le32(z, local + 22), usize);
    EXPECT_EQ(z.substr(local + 30, le16(z, local + 26)), name);
    const size_t data = local + 30 + le16(z, local + 26) + le16(z, local + 28);
    if (data + usize > cd_off) {
      ADD_FAILURE() << "member " << name << " overruns";
      return out;
    }
    const std::string body = z.substr(data, usize);
    EXPECT_EQ(uint32_t(crc32_z(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(body.data()), body.size())), crc)
        << name;
    out[name] = body;
    at += 46 + name_len + extra + comment;
  }
  EXPECT_EQ(at, end);
  return out;
}

// The int32 values of a 1-D npy "<i4" member.
std::vector<int32_t> npy_int32_vector(const std::string& npy) {
  std::vector<int32_t> v;
  if (npy.size() < 10 || npy.compare(0, 6, "\x93NUMPY") != 0) {
    ADD_FAILURE() << "not an npy member";
    return v;
  }
  const size_t data = 10 + le16(npy, 8);
  const std::string dict = npy.substr(10, data - 10);
  EXPECT_NE(dict.find("'descr': '<i4'"), std::string::npos) << dict;
  EXPECT_NE(dict.find("'shape': (26,)"), std::string::npos) << dict;
  v.resize((npy.size() - data) / 4);
  std::memcpy(v.data(), npy.data() + data, v.size() * 4);
  return v;
}

// A python3 that imports numpy: $SLUICE_TEST_PYTHON, python3 on the PATH, or /usr/bin/python3; ""
// when there is none.
std::string numpy_python() {
  static const std::string found = [] {
    std::vector<std::string> cand;
    if (const char* e = std::getenv("SLUICE_TEST_PYTHON"); e && *e) cand.push_back(e);
    cand.push_back("python3");
    cand.push_back("/usr/bin/python3");
    for (const auto& c : cand)
      if (std::system((shell_quote(c) + " -c 'import numpy' >/dev/null 2>&1").c_str()) == 0) return c;
    return std::string();
  }();
  return found;
}

// Runs a python script with arguments; stdout and stderr are returned.
CmdResult run_python(const std::string& script, const std::vector<std::string>& args, const TempDir& scratch) {
  const std::string py = scratch / "check.py", out = scratch / "py.out", err = scratch / "py.err";
  write_file(py, script);
  // Appended piece by piece ("literal" + std::string makes GCC 12 warn, PR 105329).
  std::string cmd = shell_quote(numpy_python());
  cmd += ' ';
  cmd += shell_quote(py);
  for (const auto& a : args) {
    cmd += ' ';
    cmd += shell_quote(a);
  }
  cmd += " >";
  cmd += shell_quote(out);
  cmd += " 2>";
  cmd += shell_quote(err);
  cmd += " </dev/null";
  const int st = std::system(cmd.c_str());
  CmdResult r;
  r.exit_code = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

// Runs f with the process's standard error sent to a file; returns what was written there.
std::string capture_stderr(const std::function<void()>& f, const TempDir& scratch) {
  const std::string path = scratch / "stderr.txt";
  std::fflush(stderr);
  const int saved = ::dup(2);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (saved < 0 || fd < 0) throw std::runtime_error("cannot redirect stderr");
  ::dup2(fd, 2);
  ::close(fd);
  auto restore = [&] {
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
  };
  try {
    f();
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return read_file(path);
}

}  // namespace

// ---- Meta's layout ------------------------------------------------------------------------------

TEST(MetaLayout, Split) {
  EXPECT_EQ(meta_split({10, 20, 7}), (std::vector<uint64_t>{30, 4, 3}));
  EXPECT_EQ(meta_split({10, 20, 8}), (std::vector<uint64_t>{30, 4, 4}));
  EXPECT_EQ(meta_split({5, 1}), (std::vector<uint64_t>{5, 1, 0}));
  EXPECT_EQ(meta_split({5, 0}), (std::vector<uint64_t>{5, 0, 0}));
  EXPECT_EQ(meta_split({}), (std::vector<uint64_t>{0, 0, 0}));
  // Criteo Terabyte's day 23: 178274637 rows.
  EXPECT_EQ(meta_split({1, 178274637}), (std::vector<uint64_t>{1, 89137319, 89137318}));
  EXPECT_EQ(meta_name_problem("day"), "");
  EXPECT_EQ(meta_name_problem("terabyte_processed-2"), "");
  EXPECT_NE(meta_name_problem(""), "");
  EXPECT_NE(meta_name_problem("a.b"), "");
  EXPECT_NE(meta_name_problem("a/b"), "");
  EXPECT_NE(meta_name_problem("a b"), "");
}

TEST(MetaLayout, DaysFromDaysOption) {
  // 200 rows in 6 days: 34, 34, 33, 33, 33, 33; the last day's 33 rows give 17 test rows and 16 validation rows.
  TempDir dir("meta");
  PrepOptions plain = opts_for({sample_path()}, dir / "plain");
  plain.format = OutputFormat::kDlrmBin;
  plain.days = 6;
  const PrepResult rp = prep(plain);
  PrepOptions o = opts_for({sample_path()}, dir / "meta");
  o.format = OutputFormat::kDlrmBin;
  o.layout = OutputLayout::kMeta;
  o.meta_name = "crit";
  o.days = 6;
  const PrepResult r = prep(o);
  EXPECT_EQ(r.parts, (std::vector<std::string>{"crit_train", "crit_test", "crit_val"}));
  EXPECT_EQ(r.part_rows, (std::vector<uint64_t>{167, 17, 16}));
  EXPECT_EQ(r.rows, 200u);

  std::string train;
  for (int d = 0; d < 5; ++d) train += read_file(dir / ("plain/day_" + std::to_string(d) + ".bin"));
  const std::string last = read_file(dir / "plain/day_5.bin");
  ASSERT_EQ(last.size(), 33 * kRow);
  const std::string got_train = read_file(dir / "meta/crit_train.bin");
  const std::string got_test = read_file(dir / "meta/crit_test.bin");
  const std::string got_val = read_file(dir / "meta/crit_val.bin");
  EXPECT_EQ(got_train.size(), 167 * kRow);
  EXPECT_EQ(got_test.size(), 17 * kRow);
  EXPECT_EQ(got_val.size(), 16 * kRow);
  EXPECT_TRUE(got_train == train);
  EXPECT_TRUE(got_test == last.substr(0, 17 * kRow));
  EXPECT_TRUE(got_val == last.substr(17 * kRow));

  // The counts: the table sizes of the same data, int32, in a ZIP of one stored member.
  const auto members = read_stored_zip(read_file(dir / "meta/crit_fea_count.npz"));
  ASSERT_EQ(members.size(), 1u);
  ASSERT_TRUE(members.count("counts.npy"));
  const std::vector<int32_t> counts = npy_int32_vector(members.at("counts.npy"));
  ASSERT_EQ(counts.size(), 26u);
  for (int c = 0; c < 26; ++c) {
    EXPECT_EQ(int64_t(counts[size_t(c)]), rp.vocab_sizes[size_t(c)]) << c;
    EXPECT_GT(counts[size_t(c)], 0) << c;
  }
  // Every id is below its table's count.
  for (const std::string* f : {&got_train, &got_test, &got_val})
    for (size_t row = 0; row < f->size() / kRow; ++row)
      for (int c = 0; c < 26; ++c) ASSERT_LT(int32_t(le32(*f, row * kRow + 56 + size_t(c) * 4)), counts[size_t(c)]);

  const auto names = list_dir(dir / "meta");
  for (const char* f : {"crit_train.bin", "crit_test.bin", "crit_val.bin", "crit_fea_count.npz", "manifest.json",
                        ".sluice-output"})
    EXPECT_TRUE(names.count(f)) << f;
  for (const auto& n : names) EXPECT_EQ(n.find("day_"), std::string::npos) << n;
  const json m = read_json(dir / "meta/manifest.json");
  EXPECT_EQ(m.at("format"), "dlrm-bin");
  EXPECT_EQ(m.at("layout"), "meta");
  EXPECT_EQ(m.at("meta").at("name"), "crit");
  EXPECT_EQ(m.at("meta").at("day_rows"), json({34, 34, 33, 33, 33, 33}));
  EXPECT_EQ(m.at("meta").at("counts_file"), "crit_fea_count.npz");
  EXPECT_EQ(m.at("parts").size(), 3u);
  EXPECT_EQ(m.at("parts")[1].at("name"), "crit_test");
  EXPECT_EQ(m.at("parts")[1].at("rows"), 17);
  EXPECT_EQ(m.at("vocab_sizes"), json(rp.vocab_sizes));
  // The same output twice: the same bytes (the npz has a fixed timestamp).
  PrepOptions again = o;
  again.out = dir / "again";
  again.threads = 1;
  prep(again);
  EXPECT_EQ(read_file(dir / "again/crit_fea_count.npz"), read_file(dir / "meta/crit_fea_count.npz"));
  EXPECT_TRUE(read_file(dir / "again/crit_train.bin") == got_train);
}

TEST(MetaLayout, OneInputPerDay) {
  TempDir dir("meta");
  const auto [a, b] = split_sample(120);
  write_file(dir / "day_0.tsv", a);
  write_gz(dir / "day_1.tsv.gz", b);  // 80 rows: 40 test, 40 validation
  PrepOptions plain = opts_for({dir / "day_0.tsv", dir / "day_1.tsv.gz"}, dir / "plain");
  plain.format = OutputFormat::kDlrmBin;
  prep(plain);
  PrepOptions o = opts_for({dir / "day_0.tsv", dir / "day_1.tsv.gz"}, dir / "meta");
  o.format = OutputFormat::kDlrmBin;
  o.layout = OutputLayout::kMeta;
  const PrepResult r = prep(o);
  EXPECT_EQ(r.part_rows, (std::vector<uint64_t>{120, 40, 40}));
  const std::string last = read_file(dir / "plain/day_1.bin");
  EXPECT_TRUE(read_file(dir / "meta/day_train.bin") == read_file(dir / "plain/day_0.bin"));
  EXPECT_TRUE(read_file(dir / "meta/day_test.bin") == last.substr(0, 40 * kRow));
  EXPECT_TRUE(read_file(dir / "meta/day_val.bin") == last.substr(40 * kRow));
  EXPECT_TRUE(fs::exists(dir / "meta/day_fea_count.npz"));
  EXPECT_EQ(read_json(dir / "meta/manifest.json").at("meta").at("day_rows"), json({120, 80}));

  // Values kept (--vocab none --max-ind-range N): every count is N.
  PrepOptions v = o;
  v.out = dir / "values";
  v.vocab = VocabMode::kNone;
  v.max_ind_range = 1000;
  prep(v);
  const auto members = read_stored_zip(read_file(dir / "values/day_fea_count.npz"));
  ASSERT_TRUE(members.count("counts.npy"));
  EXPECT_EQ(npy_int32_vector(members.at("counts.npy")), std::vector<int32_t>(26, 1000));
}

TEST(MetaLayout, Refusals) {
  TempDir dir("meta");
  auto refused = [&](PrepOptions o, const std::string& what) {
    SCOPED_TRACE(what);
    try {
      prep(o);
      ADD_FAILURE() << "not refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(o.out));
  };
  PrepOptions o = opts_for({sample_path()}, dir / "out");
  o.layout = OutputLayout::kMeta;
  o.format = OutputFormat::kDlrmBin;
  refused(o, "at least two days");  // one input, no --days
  o.days = 1;
  refused(o, "at least two days");
  o.days = 3;
  o.meta_name = "x.y";
  refused(o, "--name");
  o.meta_name = "";
  refused(o, "--name");
  o.meta_name = "day";
  o.format = OutputFormat::kNpy;
  refused(o, "--format dlrm-bin");
}

TEST(MetaLayout, Cli) {
  TempDir dir("meta");
  const auto [a, b] = split_sample(150);
  write_file(dir / "a.tsv", a);
  write_file(dir / "b.tsv", b);
  const std::string ins = shell_quote(dir / "a.tsv") + " " + shell_quote(dir / "b.tsv");
  CmdResult r = run_sluice("prep " + ins + " --layout meta --name tb -q --out " + shell_quote(dir / "out"), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(fs::file_size(dir / "out/tb_train.bin"), 150 * kRow);
  EXPECT_EQ(fs::file_size(dir / "out/tb_test.bin"), 25 * kRow);
  EXPECT_EQ(fs::file_size(dir / "out/tb_val.bin"), 25 * kRow);
  EXPECT_TRUE(fs::exists(dir / "out/tb_fea_count.npz"));
  // `sluice info` (which checks every file the manifest lists) accepts the layout.
  r = run_sluice("info " + shell_quote(dir / "out"), dir);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("tb_test"), std::string::npos) << r.out;
  // --days on one input.
  r = run_sluice("prep " + shell_quote(sample_path()) + " --layout meta --days 4 -q --out " + shell_quote(dir / "d4"), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(fs::file_size(dir / "d4/day_train.bin"), 150 * kRow);
  EXPECT_EQ(fs::file_size(dir / "d4/day_test.bin"), 25 * kRow);
  // Misuse: npy with the meta layout, --name without it, a bad name, one day.
  for (const std::string& bad :
       {std::string("--layout meta --format npy"), std::string("--name x"), std::string("--layout meta --name a.b"),
        std::string("--layout nope")}) {
    r = run_sluice("prep " + ins + " " + bad + " --out " + shell_quote(dir / "bad"), dir);
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_FALSE(r.err.empty()) << bad;
    EXPECT_FALSE(fs::exists(dir / "bad")) << bad;
  }
  r = run_sluice("prep " + shell_quote(dir / "a.tsv") + " --layout meta --out " + shell_quote(dir / "bad"), dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("at least two days"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "bad"));
}

TEST(MetaLayout, NotDaysForSluiceTrain) {
  TempDir dir("meta");
  PrepOptions o = opts_for({sample_path()}, dir / "out");
  o.format = OutputFormat::kDlrmBin;
  o.layout = OutputLayout::kMeta;
  o.days = 2;
  prep(o);
  try {
    inspect_dataset(dir / "out");
    ADD_FAILURE() << "read as days";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--days"), std::string::npos) << e.what();
  }
}

TEST(MetaLayout, NumpyReadsItAsMetasLoaderDoes) {
  if (numpy_python().empty()) GTEST_SKIP() << "no python3 with numpy";
  TempDir dir("meta");
  PrepOptions o = opts_for({sample_path()}, dir / "out");
  o.format = OutputFormat::kDlrmBin;
  o.layout = OutputLayout::kMeta;
  o.days = 4;
  const PrepResult res = prep(o);
  // As CriteoBinDataset: the counts from np.load(...)["counts"], rows as int32 (N, 40).
  const std::string script = R"(
import sys
import numpy as np
d, name = sys.argv[1], sys.argv[2]
with np.load(d + "/" + name + "_fea_count.npz") as z:
    assert list(z.keys()) == ["counts"], list(z.keys())
    c = z["counts"]
assert c.dtype == np.int32 and c.shape == (26,), (c.dtype, c.shape)
for split in ("train", "test", "val"):
    a = np.fromfile(d + "/" + name + "_" + split + ".bin", dtype=np.int32).reshape(-1, 40)
    assert ((a[:, 14:] >= 0) & (a[:, 14:] < c)).all(), split
    assert set(np.unique(a[:, 0])) <= {0, 1}, split
    print(split, a.shape[0])
print("counts", " ".join(str(int(x)) for x in c))
)";
  const CmdResult r = run_python(script, {dir / "out", "day"}, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string want = "train 150\ntest 25\nval 25\ncounts";
  for (int64_t v : res.vocab_sizes) {
    want += ' ';
    want += std::to_string(v);
  }
  EXPECT_EQ(r.out, want + "\n");
}

// ---- npz ----------------------------------------------------------------------------------------

TEST(Npz, StoredMembersWithCrcs) {
  TempDir dir("npz");
  NpzMember a{"counts", NpyType::kInt32, {26}, {}};
  for (int32_t i = 0; i < 26; ++i) a.data.append(reinterpret_cast<const char*>(&i), 4);
  NpzMember b{"m", NpyType::kFloat32, {2, 3}, {}};
  for (int i = 0; i < 6; ++i) {
    const float f = 0.5f * float(i);
    b.data.append(reinterpret_cast<const char*>(&f), 4);
  }
  write_npz(dir / "x.npz", {a, b});
  const auto members = read_stored_zip(read_file(dir / "x.npz"));
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members.at("counts.npy"), npy_header_bytes(NpyType::kInt32, {26}) + a.data);
  EXPECT_EQ(members.at("m.npy"), npy_header_bytes(NpyType::kFloat32, {2, 3}) + b.data);
  // Data that does not match the shape is refused.
  NpzMember bad{"bad", NpyType::kInt32, {3}, std::string(8, '\0')};
  EXPECT_THROW(write_npz(dir / "bad.npz", {bad}), Error);
  if (numpy_python().empty()) GTEST_SKIP() << "no python3 with numpy";
  const CmdResult r = run_python(R"(
import sys
import numpy as np
z = np.load(sys.argv[1])
print(sorted(z.keys()), z["counts"].dtype, z["counts"].tolist()[-1], z["m"].shape, z["m"].tolist())
)",
                                 {dir / "x.npz"}, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "['counts', 'm'] int32 25 (2, 3) [[0.0, 0.5, 1.0], [1.5, 2.0, 2.5]]\n");
}

// ---- TorchRec's npy loaders ---------------------------------------------------------------------

TEST(TorchRecNpy, ReadAsBinaryCriteoUtilsDoes) {
  if (numpy_python().empty()) GTEST_SKIP() << "no python3 with numpy";
  TempDir dir("trec");
  PrepOptions o = opts_for({sample_path()}, dir / "out");
  o.days = 3;
  const PrepResult res = prep(o);
  // TorchRec's BinaryCriteoUtils reads day_N_{dense,sparse,labels}.npy: version 1.0 headers
  // (read_array_header_1_0), 2-D arrays, float32 dense (N, 13), int32 sparse (N, 26), int32 labels
  // (N, 1); rows come either from np.load(mmap_mode="r") or np.fromfile after the header.
  const CmdResult r = run_python(R"(
import sys
import numpy as np
d, days = sys.argv[1], int(sys.argv[2])
for i in range(days):
    sums = []
    for kind, cols, dt in (("dense", 13, np.float32), ("sparse", 26, np.int32), ("labels", 1, np.int32)):
        f = "%s/day_%d_%s.npy" % (d, i, kind)
        with open(f, "rb") as fin:
            assert np.lib.format.read_magic(fin) == (1, 0), f
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fin)
            assert len(shape) == 2 and shape[1] == cols and not fortran and dtype == dt, (f, shape, fortran, dtype)
            n = shape[0]
            direct = np.fromfile(fin, dtype=dtype, count=n * cols).reshape(n, cols)
        m = np.load(f, mmap_mode="r")
        assert m.shape == (n, cols) and m.dtype == dt, (f, m.shape, m.dtype)
        assert np.array_equal(np.asarray(m[1:n]), direct[1:n]), f
        sums.append(int(np.asarray(m).view(np.uint32).astype(np.uint64).sum()))
    print(i, n, *sums)
)",
                                 {dir / "out", "3"}, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string want;
  for (int d = 0; d < 3; ++d) {
    const std::string p = dir / ("out/day_" + std::to_string(d));
    int64_t rows = 0;
    auto bits_sum = [](const auto& v) {
      uint64_t s = 0;
      for (const auto& x : v) {
        uint32_t u;
        std::memcpy(&u, &x, 4);
        s += u;
      }
      return s;
    };
    const auto dense = read_npy<float>(p + "_dense.npy", NpyType::kFloat32, &rows, 13);
    const auto sparse = read_npy<int32_t>(p + "_sparse.npy", NpyType::kInt32, &rows, 26);
    const auto labels = read_npy<int32_t>(p + "_labels.npy", NpyType::kInt32, &rows, 1);
    EXPECT_EQ(uint64_t(rows), res.part_rows[size_t(d)]);
    want += std::to_string(d) + " " + std::to_string(rows) + " " + std::to_string(bits_sum(dense)) + " " +
            std::to_string(bits_sum(sparse)) + " " + std::to_string(bits_sum(labels)) + "\n";
  }
  EXPECT_EQ(r.out, want);
}

// ---- progress of gzip inputs --------------------------------------------------------------------

TEST(GzProgress, FileBytesCountCompressedBytes) {
  TempDir dir("gzp");
  std::string text;
  for (int i = 0; i < 20; ++i) text += read_file(sample_path());
  write_gz(dir / "a.tsv.gz", text);
  write_file(dir / "b.tsv", read_file(sample_path()));
  const uint64_t gz_size = fs::file_size(dir / "a.tsv.gz"), plain_size = fs::file_size(dir / "b.tsv");
  ASSERT_LT(gz_size * 2, text.size());
  for (bool map_files : {true, false}) {
    SCOPED_TRACE(map_files ? "mapped" : "read");
    BlockReader reader({dir / "a.tsv.gz", dir / "b.tsv"}, 4096, map_files);
    BlockBuffer buf;
    Block b;
    uint64_t last = 0;
    int gz_blocks_inside = 0;  // blocks of the gzip file after which its bytes were not all consumed
    while (reader.next(&b, &buf)) {
      const uint64_t now = reader.file_bytes_read();
      EXPECT_GE(now, last);
      EXPECT_LE(now, gz_size + plain_size);
      if (b.file == 0) {
        EXPECT_LE(now, gz_size);
        if (now > 0 && now < gz_size) ++gz_blocks_inside;
      }
      last = now;
    }
    EXPECT_EQ(reader.file_bytes_read(), gz_size + plain_size);
    EXPECT_EQ(reader.bytes_read(), text.size() + plain_size);
    EXPECT_GT(gz_blocks_inside, 10);
  }
}

TEST(GzProgress, EtaForGzipInputs) {
  TempDir dir("gzp");
  std::string text;
  for (int i = 0; i < 20; ++i) text += read_file(sample_path());
  write_gz(dir / "a.tsv.gz", text);
  PrepOptions o = opts_for({dir / "a.tsv.gz"}, dir / "out");
  o.threads = 1;
  o.progress_every = 1e-9;  // a line for every chunk
  const std::string err = capture_stderr([&] { prep(o); }, dir);
  EXPECT_NE(err.find("prep: "), std::string::npos) << err;
  EXPECT_NE(err.find(", ETA "), std::string::npos) << err;
  // A stream has no size: no ETA.
  PrepOptions p = opts_for({"-"}, dir / "out2");
  p.threads = 1;
  p.progress_every = 1e-9;
  const int saved = ::dup(0);
  const int fd = ::open((dir / "a.tsv.gz").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::dup2(fd, 0);
  ::close(fd);
  std::string err2;
  try {
    err2 = capture_stderr([&] { prep(p); }, dir);
  } catch (...) {
    ::dup2(saved, 0);
    ::close(saved);
    throw;
  }
  ::dup2(saved, 0);
  ::close(saved);
  EXPECT_NE(err2.find("prep: "), std::string::npos) << err2;
  EXPECT_EQ(err2.find("ETA"), std::string::npos) << err2;
}
