// The sluice core as a Coyote vFPGA (included by the shell's user wrapper, which declares aclk,
// aresetn and the interfaces used here). Text arrives on host stream 0 and packed rows leave on
// host stream 0; the control registers and the error records are on the vFPGA's AXI4-Lite port
// (see hw/rtl/sluice_ctrl_axil.sv). Everything else is tied off.
//
// Build: a Coyote v2 project for the U55C (xcu55c-fsvh2892-2L-e) with one vFPGA, host streams on
// (EN_STRM), 512-bit data; add hw/rtl/*.sv to the vFPGA's sources and this file as its
// vfpga_top.svh. See docs/fpga.md.

sluice_vfpga #(
  .NumLanes     (16),
  .BytesPerCycle(8)
) inst_sluice (
  .clk_i          (aclk),
  .rst_ni         (aresetn),
  // text in
  .s_axis_tvalid_i(axis_host_recv[0].tvalid),
  .s_axis_tready_o(axis_host_recv[0].tready),
  .s_axis_tdata_i (axis_host_recv[0].tdata),
  .s_axis_tkeep_i (axis_host_recv[0].tkeep),
  .s_axis_tlast_i (axis_host_recv[0].tlast),
  // packed rows out
  .m_axis_tvalid_o(axis_host_send[0].tvalid),
  .m_axis_tready_i(axis_host_send[0].tready),
  .m_axis_tdata_o (axis_host_send[0].tdata),
  .m_axis_tkeep_o (axis_host_send[0].tkeep),
  .m_axis_tlast_o (axis_host_send[0].tlast),
  // control
  .awaddr_i       (axi_ctrl.awaddr[7:0]),
  .awvalid_i      (axi_ctrl.awvalid),
  .awready_o      (axi_ctrl.awready),
  .wdata_i        (axi_ctrl.wdata),
  .wstrb_i        (axi_ctrl.wstrb),
  .wvalid_i       (axi_ctrl.wvalid),
  .wready_o       (axi_ctrl.wready),
  .bresp_o        (axi_ctrl.bresp),
  .bvalid_o       (axi_ctrl.bvalid),
  .bready_i       (axi_ctrl.bready),
  .araddr_i       (axi_ctrl.araddr[7:0]),
  .arvalid_i      (axi_ctrl.arvalid),
  .arready_o      (axi_ctrl.arready),
  .rdata_o        (axi_ctrl.rdata),
  .rresp_o        (axi_ctrl.rresp),
  .rvalid_o       (axi_ctrl.rvalid),
  .rready_i       (axi_ctrl.rready),
  // vocabulary tables: not bound to card memory yet (keep the vocab register's bit 0 low)
  .m_axi_arvalid_o(),
  .m_axi_arready_i(1'b0),
  .m_axi_araddr_o (),
  .m_axi_rvalid_i (1'b0),
  .m_axi_rready_o (),
  .m_axi_rdata_i  ('0),
  .m_axi_awvalid_o(),
  .m_axi_awready_i(1'b0),
  .m_axi_awaddr_o (),
  .m_axi_wvalid_o (),
  .m_axi_wready_i (1'b0),
  .m_axi_wdata_o  (),
  .m_axi_bvalid_i (1'b0),
  .m_axi_bready_o ()
);

// The output stream carries no stream id.
assign axis_host_send[0].tid = '0;

// Unused: the send/completion queues (the host issues the transfers) and notifications.
always_comb sq_rd.tie_off_m();
always_comb sq_wr.tie_off_m();
always_comb cq_rd.tie_off_s();
always_comb cq_wr.tie_off_s();
always_comb notify.tie_off_m();
