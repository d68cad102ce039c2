#include <cstdio>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "sluice/source.hpp"

namespace sluice::cli {

void add_info_command(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("info", "Summarise a prepared dataset (parts, rows, vocabulary sizes, options)");
  cmd->add_option("dir", *dir, "A `sluice prep` output directory")->required();
  cmd->add_flag("--json", *as_json, "Print the manifest as JSON");
  cmd->callback([=] {
    const std::string path = *dir + "/manifest.json";
    std::ifstream in(path);
    if (!in) throw Error(path + ": no manifest (is this a `sluice prep` output?)");
    nlohmann::json m;
    try {
      in >> m;
    } catch (const std::exception& e) {
      throw Error(path + ": bad JSON: " + e.what());
    }
    if (*as_json) { std::printf("%s\n", m.dump(2).c_str()); return; }
    try {
      std::printf("dataset   %s\n", dir->c_str());
      std::printf("format    %s (dense %s, sparse %s)\n", m.at("format").get<std::string>().c_str(),
                  m.value("dense_dtype", "?").c_str(), m.value("sparse_dtype", "?").c_str());
      std::printf("rows      %llu (skipped %llu)\n", (unsigned long long)m.at("rows").get<uint64_t>(),
                  (unsigned long long)m.value("rows_skipped", uint64_t(0)));
      std::printf("parts     %zu\n", m.at("parts").size());
      for (const auto& p : m.at("parts"))
        std::printf("  %-16s %12llu rows\n", p.at("name").get<std::string>().c_str(), (unsigned long long)p.at("rows").get<uint64_t>());
      std::printf("vocab sizes");
      uint64_t total = 0;
      int k = 0;
      for (const auto& v : m.at("vocab_sizes")) {
        std::printf("%s C%d=%llu", k % 6 == 0 ? "\n " : "", k + 1, (unsigned long long)v.get<uint64_t>());
        total += v.get<uint64_t>();
        ++k;
      }
      std::printf("\n  total embedding rows: %llu\n", (unsigned long long)total);
      std::printf("options   %s\n", m.at("options").dump().c_str());
      if (!m.value("bad_rows", nlohmann::json::array()).empty()) {
        std::printf("bad rows (first %zu):\n", m["bad_rows"].size());
        for (const auto& b : m["bad_rows"])
          std::printf("  %s:%llu: %s\n", b.at("file").get<std::string>().c_str(),
                      (unsigned long long)b.at("line").get<uint64_t>(), b.at("reason").get<std::string>().c_str());
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(path + ": unexpected manifest content: " + e.what());
    }
  });
}

}  // namespace sluice::cli
