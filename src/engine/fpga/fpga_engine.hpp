// The fpga engine: every block of text goes through the preprocessing core (hw/rtl) behind the
// driver (driver.hpp) as one transfer; the core's packed rows and error records become the
// engine interface's chunks. Private to the engine layer.
#pragma once

#include <memory>

#include "sluice/engine.hpp"

namespace sluice {

// The fpga engine on the Verilated core. Throws sluice::Error when this build has none.
std::unique_ptr<Engine> make_fpga_engine(const EngineOptions& opts);

}  // namespace sluice
