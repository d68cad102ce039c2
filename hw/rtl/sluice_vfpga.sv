// The core as a card's user logic: text in and packed rows out on one 512-bit stream pair, control
// and error records on AXI4-Lite (sluice_ctrl_axil). Plain ports, so that any shell can bind it;
// hw/coyote/vfpga_top.svh binds it into a Coyote vFPGA.
module sluice_vfpga #(
  parameter int unsigned NumLanes      = 16,
  parameter int unsigned BytesPerCycle = 8
) (
  input  logic         clk_i,
  input  logic         rst_ni,
  input  logic         s_axis_tvalid_i,
  output logic         s_axis_tready_o,
  input  logic [511:0] s_axis_tdata_i,
  input  logic [63:0]  s_axis_tkeep_i,
  input  logic         s_axis_tlast_i,
  output logic         m_axis_tvalid_o,
  input  logic         m_axis_tready_i,
  output logic [511:0] m_axis_tdata_o,
  output logic [63:0]  m_axis_tkeep_o,
  output logic         m_axis_tlast_o,
  input  logic [7:0]   awaddr_i,
  input  logic         awvalid_i,
  output logic         awready_o,
  input  logic [63:0]  wdata_i,
  input  logic [7:0]   wstrb_i,
  input  logic         wvalid_i,
  output logic         wready_o,
  output logic [1:0]   bresp_o,
  output logic         bvalid_o,
  input  logic         bready_i,
  input  logic [7:0]   araddr_i,
  input  logic         arvalid_i,
  output logic         arready_o,
  output logic [63:0]  rdata_o,
  output logic [1:0]   rresp_o,
  output logic         rvalid_o,
  input  logic         rready_i,
  // card memory for the vocabulary tables (AXI4, single 16-byte beats)
  output logic         m_axi_arvalid_o,
  input  logic         m_axi_arready_i,
  output logic [63:0]  m_axi_araddr_o,
  input  logic         m_axi_rvalid_i,
  output logic         m_axi_rready_o,
  input  logic [127:0] m_axi_rdata_i,
  output logic         m_axi_awvalid_o,
  input  logic         m_axi_awready_i,
  output logic [63:0]  m_axi_awaddr_o,
  output logic         m_axi_wvalid_o,
  input  logic         m_axi_wready_i,
  output logic [127:0] m_axi_wdata_o,
  input  logic         m_axi_bvalid_i,
  output logic         m_axi_bready_o
);

  logic        dense_int, seed;
  logic [1:0]  mode;
  logic        vocab_en, vocab_clear;
  logic [63:0] vocab_base;
  logic [4:0]  vocab_tbits;
  logic        vocab_full;
  logic [63:0] mod_n, mod_magic;
  logic        err_valid, err_ready;
  logic [63:0] err_data;
  logic        out_beat;
  logic [6:0]  out_bytes;

  sluice_tsv_core #(
    .NumLanes     (NumLanes),
    .BytesPerCycle(BytesPerCycle)
  ) u_core (
    .clk_i,
    .rst_ni,
    .mode_i         (mode),
    .dense_int_i    (dense_int),
    .seed_i         (seed),
    .vocab_en_i     (vocab_en),
    .vocab_clear_i  (vocab_clear),
    .vocab_base_i   (vocab_base),
    .vocab_tbits_i  (vocab_tbits),
    .vocab_full_o   (vocab_full),
    .m_axi_arvalid_o,
    .m_axi_arready_i,
    .m_axi_araddr_o,
    .m_axi_rvalid_i,
    .m_axi_rready_o,
    .m_axi_rdata_i,
    .m_axi_awvalid_o,
    .m_axi_awready_i,
    .m_axi_awaddr_o,
    .m_axi_wvalid_o,
    .m_axi_wready_i,
    .m_axi_wdata_o,
    .m_axi_bvalid_i,
    .m_axi_bready_o,
    .mod_n_i        (mod_n),
    .mod_magic_i    (mod_magic),
    .s_axis_tvalid_i,
    .s_axis_tready_o,
    .s_axis_tdata_i,
    .s_axis_tkeep_i,
    .s_axis_tlast_i,
    .m_axis_tvalid_o,
    .m_axis_tready_i,
    .m_axis_tdata_o,
    .m_axis_tkeep_o,
    .m_axis_tlast_o,
    .e_axis_tvalid_o(err_valid),
    .e_axis_tready_i(err_ready),
    .e_axis_tdata_o (err_data)
  );

  sluice_ctrl_axil u_ctrl (
    .clk_i,
    .rst_ni,
    .awaddr_i,
    .awvalid_i,
    .awready_o,
    .wdata_i,
    .wstrb_i,
    .wvalid_i,
    .wready_o,
    .bresp_o,
    .bvalid_o,
    .bready_i,
    .araddr_i,
    .arvalid_i,
    .arready_o,
    .rdata_o,
    .rresp_o,
    .rvalid_o,
    .rready_i,
    .mode_o     (mode),
    .vocab_en_o   (vocab_en),
    .vocab_clear_o(vocab_clear),
    .vocab_base_o (vocab_base),
    .vocab_tbits_o(vocab_tbits),
    .vocab_full_i (vocab_full),
    .dense_int_o(dense_int),
    .seed_o     (seed),
    .mod_n_o    (mod_n),
    .mod_magic_o(mod_magic),
    .err_valid_i(err_valid),
    .err_ready_o(err_ready),
    .err_data_i (err_data),
    .out_beat_i (out_beat),
    .out_bytes_i(out_bytes),
    .done_i     (out_beat & m_axis_tlast_o)
  );

  assign out_beat = m_axis_tvalid_o & m_axis_tready_i;
  always_comb begin
    out_bytes = '0;
    for (int b = 0; b < 64; b++) out_bytes = out_bytes + 7'(m_axis_tkeep_o[b]);
  end

endmodule
