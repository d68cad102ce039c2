// Training on several ranks: the launch environment, the sharding plan, and the sharded lookups and
// gradients against one whole model, with ranks as threads of this process over Gloo.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>

#include <numeric>
#include <optional>
#include <thread>

#include "train_util.hpp"
#include "trainer/dist.hpp"
#include "trainer/sharded.hpp"

namespace sluice_train_test {
namespace {

namespace dist = sluice::train::dist;

// Sets environment variables for a test's scope; restores them after.
class EnvVars {
 public:
  explicit EnvVars(std::vector<std::pair<std::string, std::string>> vars) {
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
      const char* v = std::getenv(k);
      saved_.emplace_back(k, v ? std::optional<std::string>(v) : std::nullopt);
      ::unsetenv(k);
    }
    for (auto& [k, v] : vars) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~EnvVars() {
    for (auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(DistEnv, OneProcessUnlessWorldSizeSaysOtherwise) {
  {
    EnvVars e({});
    EXPECT_FALSE(dist::env_from_environment().active());
  }
  {
    EnvVars e({{"WORLD_SIZE", "1"}, {"RANK", "0"}});
    EXPECT_FALSE(dist::env_from_environment().active());
  }
  {
    EnvVars e({{"WORLD_SIZE", "4"}, {"RANK", "2"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29500"}});
    const dist::Env env = dist::env_from_environment();
    EXPECT_TRUE(env.active());
    EXPECT_EQ(env.world, 4);
    EXPECT_EQ(env.rank, 2);
    EXPECT_EQ(env.local_rank, 2);  // LOCAL_RANK defaults to RANK
    EXPECT_EQ(env.master_addr, "10.0.0.1");
    EXPECT_EQ(env.master_port, 29500);
  }
  {
    EnvVars e({{"WORLD_SIZE", "4"}, {"RANK", "3"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}});
    EXPECT_EQ(dist::env_from_environment().local_rank, 1);
  }
}

TEST(DistEnv, MalformedOrMissingVariablesAreNamed) {
  auto message = [](std::vector<std::pair<std::string, std::string>> vars) {
    EnvVars e(std::move(vars));
    try {
      dist::env_from_environment();
    } catch (const sluice::Error& err) {
      return std::string(err.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"WORLD_SIZE", "two"}}).find("WORLD_SIZE"), std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}}).find("RANK"), std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "5"}}).find("RANK"),
            std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}, {"RANK", "1"}}).find("MASTER_ADDR"), std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "99999"}}).find("MASTER_PORT"),
            std::string::npos);
}

TEST(DistPlan, SharesAreConsecutiveAndEven) {
  for (int world : {1, 2, 3, 8})
    for (int64_t rows : {0, 1, 2, 7, 16384, 16385}) {
      const auto s = dist::split_rows(rows, world);
      ASSERT_EQ(static_cast<int>(s.size()), world);
      EXPECT_EQ(std::accumulate(s.begin(), s.end(), int64_t{0}), rows);
      for (size_t p = 1; p < s.size(); ++p) EXPECT_TRUE(s[p] == s[p - 1] || s[p] + 1 == s[p - 1]);
    }
}

TEST(DistPlan, TablesBalancedAndLargeOnesRowWise) {
  const std::vector<int64_t> kaggle = st::parse_table_sizes("kaggle");
  const int64_t total = std::accumulate(kaggle.begin(), kaggle.end(), int64_t{0});
  for (int world : {2, 3, 4, 8}) {
    const auto owner = dist::assign_tables(kaggle, world, 0);
    std::vector<int64_t> load(static_cast<size_t>(world), 0);
    int64_t largest_whole = 0;
    for (size_t t = 0; t < kaggle.size(); ++t) {
      if (owner[t] == dist::kRowWise) {
        EXPECT_GT(kaggle[t], total / world);
        for (auto& l : load) l += dist::row_block(kaggle[t], world);
        continue;
      }
      ASSERT_GE(owner[t], 0);
      ASSERT_LT(owner[t], world);
      EXPECT_LE(kaggle[t], total / world);
      load[static_cast<size_t>(owner[t])] += kaggle[t];
      largest_whole = std::max(largest_whole, kaggle[t]);
    }
    // Greedy placement, largest first: no rank holds more than another plus the largest whole table.
    const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
    EXPECT_LE(*hi - *lo, largest_whole) << world << " ranks";
  }
  for (int64_t t : dist::assign_tables(kaggle, 4, -1)) EXPECT_NE(t, dist::kRowWise);
  for (int64_t t : dist::assign_tables(kaggle, 4, 1)) EXPECT_EQ(t, dist::kRowWise);  // every table has > 1 row
  for (int64_t t : dist::assign_tables(kaggle, 1, 1)) EXPECT_EQ(t, 0);
}

TEST(DistPlan, HeldRowsCoverEveryTableOnce) {
  const std::vector<int64_t> sizes = {1, 2, 3, 5, 7, 10, 1000, 999, 4, 6, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18,
                                      19, 20, 21, 22, 23, 24};
  for (int world : {2, 3, 5}) {
    const auto owner = dist::assign_tables(sizes, world, 9);
    std::vector<int64_t> covered(sizes.size(), 0);
    for (int r = 0; r < world; ++r) {
      const auto held = st::Sharded::held(owner, sizes, world, r);
      for (size_t t = 0; t < sizes.size(); ++t) {
        EXPECT_LE(held[t].begin + held[t].rows, sizes[t]);
        if (owner[t] == dist::kRowWise && held[t].rows > 0) {
          EXPECT_EQ(held[t].begin, dist::row_block(sizes[t], world) * r);
        }
        covered[t] += held[t].rows;
      }
    }
    for (size_t t = 0; t < sizes.size(); ++t) EXPECT_EQ(covered[t], sizes[t]) << "table " << t;
  }
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Ranks as threads over Gloo: every rank's lookup of its share equals the whole model's rows bit for bit,
// and the gradients each rank receives for its rows sum to the whole batch's gradient of those rows.
// Some tables whole, some row-wise; batches that split unevenly, and one smaller than the ranks.
TEST(DistSharded, LookupsAndGradientsMatchTheWholeModel) {
  std::string why;
  if (!dist::available(&why)) GTEST_SKIP() << why;
  const int world = 3;
  const int64_t d = 4;
  std::vector<int64_t> sizes;
  for (int t = 0; t < kT; ++t) sizes.push_back(1 + (t * 13) % 40);
  st::Arch arch;
  arch.emb_dim = d;
  arch.bot_mlp = {kD, 5, d};
  arch.top_mlp = {st::interaction_width(d), 3, 1};
  arch.table_sizes = sizes;
  const uint64_t seed = 11;
  const auto owner = dist::assign_tables(sizes, world, 20);
  ASSERT_NE(std::count(owner.begin(), owner.end(), dist::kRowWise), 0);
  ASSERT_NE(std::count(owner.begin(), owner.end(), dist::kRowWise), kT);
  st::Dlrm whole(arch, seed, torch::kCPU);

  const int port = free_port();
  std::vector<std::string> failures(world);
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back([&, r] {
      try {
        dist::Env env;
        env.rank = r;
        env.world = world;
        env.master_addr = "127.0.0.1";
        env.master_port = port;
        dist::Group group(env, torch::kCPU);
        st::Dlrm part(arch, seed, torch::kCPU, st::Precision::kFp32, st::Sharded::held(owner, sizes, world, r));
        st::Sharded sharded(part, group, owner);
        std::mt19937_64 rng(5);  // the same global batches on every rank
        for (int64_t B : {int64_t{7}, int64_t{2}, int64_t{12}}) {
          std::vector<int32_t> ids(static_cast<size_t>(B * kT));
          for (int64_t i = 0; i < B; ++i)
            for (int t = 0; t < kT; ++t)
              ids[static_cast<size_t>(i * kT + t)] = static_cast<int32_t>(rng() % static_cast<uint64_t>(sizes[static_cast<size_t>(t)]));
          const torch::Tensor all_ids = torch::tensor(ids, torch::kInt32).view({B, kT});
          at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(B));  // same on every rank
          const torch::Tensor g_all = at::randn({B, kT, d}, gen, torch::TensorOptions().dtype(torch::kFloat32));
          const auto shares = dist::split_rows(B, world);
          int64_t first = 0;
          for (int p = 0; p < r; ++p) first += shares[static_cast<size_t>(p)];
          const int64_t b = shares[static_cast<size_t>(r)];
          const torch::Tensor my_ids = all_ids.narrow(0, first, b);
          const auto lk = sharded.lookup(part.flat_ids(my_ids), shares);
          const torch::Tensor want = whole.gather(whole.flat_ids(my_ids));
          // A mismatch is recorded, not thrown: the other ranks still wait for this one's collectives.
          if (!torch::equal(lk.rows, want)) failures[static_cast<size_t>(r)] += "rows differ, batch of " + std::to_string(B) + "; ";

          // Gradients: what this rank holds, summed per row, against the whole batch's.
          const torch::Tensor got = sharded.grads_to_owners(g_all.narrow(0, first, b), shares, lk.rw_mine);
          torch::Tensor mine = torch::zeros({part.total_rows(), d});
          mine.index_add_(0, lk.own_flat.to(torch::kInt64), got);
          torch::Tensor full = torch::zeros({whole.total_rows(), d});
          full.index_add_(0, whole.flat_ids(all_ids).to(torch::kInt64), g_all.reshape({-1, d}));
          for (int t = 0; t < kT; ++t) {
            const st::RowRange h = part.table_held()[static_cast<size_t>(t)];
            if (h.rows == 0) continue;
            const torch::Tensor a = mine.narrow(0, part.table_offsets()[static_cast<size_t>(t)], h.rows);
            const torch::Tensor w = full.narrow(0, whole.table_offsets()[static_cast<size_t>(t)] + h.begin, h.rows);
            if (!torch::allclose(a, w, 1e-5, 1e-6))
              failures[static_cast<size_t>(r)] +=
                  "gradients of table " + std::to_string(t) + " differ, batch of " + std::to_string(B) + "; ";
          }
        }
      } catch (const std::exception& e) {
        failures[static_cast<size_t>(r)] += e.what();
      }
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(failures[static_cast<size_t>(r)], "") << "rank " << r;
}

}  // namespace
}  // namespace sluice_train_test
