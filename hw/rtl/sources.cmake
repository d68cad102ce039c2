# The RTL core's sources in compilation order (the package first), for Verilator and Yosys.
set(SLUICE_RTL_DIR ${CMAKE_CURRENT_LIST_DIR})
set(SLUICE_RTL_SOURCES
  ${SLUICE_RTL_DIR}/sluice_pkg.sv
  ${SLUICE_RTL_DIR}/sluice_fifo.sv
  ${SLUICE_RTL_DIR}/sluice_log_rom.sv
  ${SLUICE_RTL_DIR}/sluice_log1p.sv
  ${SLUICE_RTL_DIR}/sluice_mod32.sv
  ${SLUICE_RTL_DIR}/sluice_tsv_split.sv
  ${SLUICE_RTL_DIR}/sluice_tsv_lane.sv
  ${SLUICE_RTL_DIR}/sluice_row_merge.sv
  ${SLUICE_RTL_DIR}/sluice_row_xform.sv
  ${SLUICE_RTL_DIR}/sluice_row_pack.sv
  ${SLUICE_RTL_DIR}/sluice_vocab.sv
  ${SLUICE_RTL_DIR}/sluice_bin_rows.sv
  ${SLUICE_RTL_DIR}/sluice_tsv_core.sv
  ${SLUICE_RTL_DIR}/sluice_ctrl_axil.sv
  ${SLUICE_RTL_DIR}/sluice_vfpga.sv)
