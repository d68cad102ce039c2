// `--engine fpga` works when the build has the Verilated core, and otherwise says why it does not.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "sluice/engine.hpp"
#include "sluice/source.hpp"

TEST(FpgaAvailability, BuiltInOrSaysWhy) {
  const auto v = sluice::available_engines();
  const bool listed = std::find(v.begin(), v.end(), "fpga") != v.end();
#if defined(SLUICE_HAVE_FPGA)
  EXPECT_TRUE(listed);
  EXPECT_STREQ(sluice::make_engine("fpga", sluice::EngineOptions{})->name(), "fpga");
#else
  EXPECT_FALSE(listed);
  try {
    sluice::make_engine("fpga", sluice::EngineOptions{});
    ADD_FAILURE() << "make_engine(\"fpga\") should throw in a build without Verilator";
  } catch (const sluice::Error& e) {
    EXPECT_NE(std::string(e.what()).find("without Verilator"), std::string::npos) << e.what();
  }
#endif
}
