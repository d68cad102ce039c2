// The sluice preprocessing core for Criteo TSV text.
//
//   s_axis (512-bit text) -> sluice_tsv_split -> NumLanes x sluice_tsv_lane -> sluice_row_merge
//     -> sluice_row_xform -> sluice_vocab -> sluice_row_pack -> m_axis (packed 160-byte rows)
//                                                                + e_axis (errors)
//
// One transfer (tlast-terminated) is one piece of whole lines; lines are numbered from 0 within it.
// mode_i selects the input: 0 TSV text (above), 1 Meta's 160-byte binary rows, 2 192-byte rows of
// three beats (sluice_bin_rows), which join the pipeline at the transforms.
// Control (held stable while a transfer is in flight): dense_int_i selects clamped int32 dense
// values instead of float32 ln(x + 1); mod_n_i / mod_magic_i the ids' modulus (0: none) and its
// reciprocal floor((2^64 - 1) / n) + 1; seed_i in mode 2: the seed kernel's lanes and framing
// (sluice_bin_rows, sluice_row_xform).
module sluice_tsv_core
#(
  parameter int unsigned NumLanes      = 16,
  parameter int unsigned BytesPerCycle = 8,
  parameter int unsigned SegsPerCycle  = 4
) (
  input  logic                   clk_i,
  input  logic                   rst_ni,
  // control
  input  logic [1:0]             mode_i,
  input  logic                   dense_int_i,
  input  logic                   seed_i,
  input  logic                   vocab_en_i,
  input  logic                   vocab_clear_i,
  input  logic [63:0]            vocab_base_i,
  input  logic [4:0]             vocab_tbits_i,
  output logic                   vocab_full_o,
  input  logic [63:0]            mod_n_i,
  input  logic [63:0]            mod_magic_i,
  // text in
  input  logic                   s_axis_tvalid_i,
  output logic                   s_axis_tready_o,
  input  logic [sluice_pkg::BeatBytes*8-1:0] s_axis_tdata_i,
  input  logic [sluice_pkg::BeatBytes-1:0]   s_axis_tkeep_i,
  input  logic                   s_axis_tlast_i,
  // packed rows out
  output logic                   m_axis_tvalid_o,
  input  logic                   m_axis_tready_i,
  output logic [sluice_pkg::BeatBytes*8-1:0] m_axis_tdata_o,
  output logic [sluice_pkg::BeatBytes-1:0]   m_axis_tkeep_o,
  output logic                   m_axis_tlast_o,
  // vocabulary tables (AXI4 master, single 16-byte beats)
  output logic                   m_axi_arvalid_o,
  input  logic                   m_axi_arready_i,
  output logic [63:0]            m_axi_araddr_o,
  input  logic                   m_axi_rvalid_i,
  output logic                   m_axi_rready_o,
  input  logic [127:0]           m_axi_rdata_i,
  output logic                   m_axi_awvalid_o,
  input  logic                   m_axi_awready_i,
  output logic [63:0]            m_axi_awaddr_o,
  output logic                   m_axi_wvalid_o,
  input  logic                   m_axi_wready_i,
  output logic [127:0]           m_axi_wdata_o,
  input  logic                   m_axi_bvalid_i,
  output logic                   m_axi_bready_o,
  // error records out
  output logic                   e_axis_tvalid_o,
  input  logic                   e_axis_tready_i,
  output logic [63:0]            e_axis_tdata_o
);

  logic [NumLanes-1:0] seg_valid, seg_ready, row_valid, row_ready;
  // Plain vectors per lane (seg_t, prow_t): Yosys reads a packed array of a package's struct as one.
  logic [NumLanes-1:0][sluice_pkg::SegBits-1:0]  segs;
  logic                text, split_ready, bin_ready;

  assign text            = mode_i == 2'd0;
  assign s_axis_tready_o = text ? split_ready : bin_ready;
  logic [NumLanes-1:0][sluice_pkg::ProwBits-1:0] rows;

  sluice_tsv_split #(
    .NumLanes    (NumLanes),
    .SegsPerCycle(SegsPerCycle)
  ) u_split (
    .clk_i,
    .rst_ni,
    .s_tvalid_i (s_axis_tvalid_i & text),
    .s_tready_o (split_ready),
    .s_tdata_i  (s_axis_tdata_i),
    .s_tkeep_i  (s_axis_tkeep_i),
    .s_tlast_i  (s_axis_tlast_i),
    .seg_valid_o(seg_valid),
    .seg_ready_i(seg_ready),
    .seg_o      (segs)
  );

  for (genvar l = 0; l < NumLanes; l++) begin : gen_lane
    sluice_tsv_lane #(
      .BytesPerCycle(BytesPerCycle)
    ) u_lane (
      .clk_i,
      .rst_ni,
      .seg_valid_i(seg_valid[l]),
      .seg_ready_o(seg_ready[l]),
      .seg_i      (segs[l]),
      .row_valid_o(row_valid[l]),
      .row_ready_i(row_ready[l]),
      .row_o      (rows[l])
    );
  end

  logic              m_valid, m_ready;
  sluice_pkg::prow_t             m_row;
  logic [sluice_pkg::RowNoW-1:0] m_row_no;

  sluice_row_merge #(
    .NumLanes(NumLanes)
  ) u_merge (
    .clk_i,
    .rst_ni,
    .row_valid_i (row_valid),
    .row_ready_o (row_ready),
    .row_i       (rows),
    .out_valid_o (m_valid),
    .out_ready_i (m_ready),
    .out_row_o   (m_row),
    .out_row_no_o(m_row_no)
  );

  // Binary rows skip the text stages.
  logic                          b_valid, b_ready;
  sluice_pkg::prow_t             b_row;
  logic [sluice_pkg::RowNoW-1:0] b_row_no;
  logic [31:0]                   b_label_word;
  logic                          seed;
  assign seed = seed_i & (mode_i == 2'd2);

  sluice_bin_rows u_bin (
    .clk_i,
    .rst_ni,
    .wide192_i  (mode_i == 2'd2),
    .seed_i     (seed),
    .s_tvalid_i (s_axis_tvalid_i & !text),
    .s_tready_o (bin_ready),
    .s_tdata_i  (s_axis_tdata_i),
    .s_tkeep_i  (s_axis_tkeep_i),
    .s_tlast_i  (s_axis_tlast_i),
    .row_valid_o(b_valid),
    .row_ready_i(b_ready),
    .row_o      (b_row),
    .row_no_o   (b_row_no),
    .label_word_o(b_label_word)
  );

  logic                          t_valid, t_ready;
  sluice_pkg::prow_t             t_row;
  logic [sluice_pkg::RowNoW-1:0] t_row_no;

  assign t_valid  = text ? m_valid : b_valid;
  assign t_row    = text ? m_row : b_row;
  assign t_row_no = text ? m_row_no : b_row_no;
  assign m_ready  = text & t_ready;
  assign b_ready  = !text & t_ready;

  logic  x_valid, x_ready;
  sluice_pkg::xrow_t x_row;

  sluice_row_xform u_xform (
    .clk_i,
    .rst_ni,
    .dense_int_i,
    .seed_i       (seed),
    .label_word_i (b_label_word),
    .mod_n_i,
    .mod_magic_i,
    .in_valid_i (t_valid),
    .in_ready_o (t_ready),
    .in_row_i   (t_row),
    .in_row_no_i(t_row_no),
    .out_valid_o(x_valid),
    .out_ready_i(x_ready),
    .out_row_o  (x_row)
  );

  logic              v_valid, v_ready;
  sluice_pkg::xrow_t v_row;

  sluice_vocab u_vocab (
    .clk_i,
    .rst_ni,
    .enable_i   (vocab_en_i),
    .clear_i    (vocab_clear_i),
    .base_i     (vocab_base_i),
    .tbits_i    (vocab_tbits_i),
    .full_o     (vocab_full_o),
    .in_valid_i (x_valid),
    .in_ready_o (x_ready),
    .in_row_i   (x_row),
    .out_valid_o(v_valid),
    .out_ready_i(v_ready),
    .out_row_o  (v_row),
    .m_arvalid_o(m_axi_arvalid_o),
    .m_arready_i(m_axi_arready_i),
    .m_araddr_o (m_axi_araddr_o),
    .m_rvalid_i (m_axi_rvalid_i),
    .m_rready_o (m_axi_rready_o),
    .m_rdata_i  (m_axi_rdata_i),
    .m_awvalid_o(m_axi_awvalid_o),
    .m_awready_i(m_axi_awready_i),
    .m_awaddr_o (m_axi_awaddr_o),
    .m_wvalid_o (m_axi_wvalid_o),
    .m_wready_i (m_axi_wready_i),
    .m_wdata_o  (m_axi_wdata_o),
    .m_bvalid_i (m_axi_bvalid_i),
    .m_bready_o (m_axi_bready_o)
  );

  sluice_pkg::err_rec_t err_rec;

  sluice_row_pack u_pack (
    .clk_i,
    .rst_ni,
    .in_valid_i(v_valid),
    .in_ready_o(v_ready),
    .in_row_i  (v_row),
    .m_tvalid_o(m_axis_tvalid_o),
    .m_tready_i(m_axis_tready_i),
    .m_tdata_o (m_axis_tdata_o),
    .m_tkeep_o (m_axis_tkeep_o),
    .m_tlast_o (m_axis_tlast_o),
    .e_tvalid_o(e_axis_tvalid_o),
    .e_tready_i(e_axis_tready_i),
    .e_tdata_o (err_rec)
  );

  assign e_axis_tdata_o = err_rec;

endmodule
