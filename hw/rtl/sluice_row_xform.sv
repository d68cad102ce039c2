// The per-value transforms of a parsed row, one row per cycle: dense ints to float32 ln(x + 1) of
// Neg2Zero(x) (DenseMode 0) or to Neg2Zero(x) saturated to int32 (DenseMode 1), ids modulo a
// runtime n. Pipelined (the latency of sluice_log1p); the whole pipeline holds while the output
// is stalled.
module sluice_row_xform
(
  input  logic              clk_i,
  input  logic              rst_ni,
  input  logic              dense_int_i,   // 1: clamped int32 instead of the log
  input  logic [63:0]       mod_n_i,
  input  logic [63:0]       mod_magic_i,
  input  logic              in_valid_i,
  output logic              in_ready_o,
  input  sluice_pkg::prow_t             in_row_i,
  input  logic [sluice_pkg::RowNoW-1:0] in_row_no_i,
  output logic              out_valid_o,
  input  logic              out_ready_i,
  output sluice_pkg::xrow_t             out_row_o
);

  localparam int unsigned Lat = 7;  // sluice_log1p's pipeline depth

  logic en;
  assign en         = out_ready_i | ~out_valid_o;
  assign in_ready_o = en;

  // Everything but the logs goes through a delay line of the same length.
  sluice_pkg::xrow_t            meta_d;
  logic [Lat-1:0]   valid_q;
  sluice_pkg::xrow_t            meta_q [Lat];
  logic [sluice_pkg::NumDense-1:0][31:0] logs;
  logic [sluice_pkg::NumSparse-1:0][31:0] cats_mod;

  always_comb begin
    meta_d        = '0;
    meta_d.eot    = in_row_i.eot;
    meta_d.err    = in_row_i.err;
    meta_d.field  = in_row_i.field;
    meta_d.row_no = in_row_no_i;
    meta_d.words[31:0] = {31'd0, in_row_i.label};
    for (int i = 0; i < sluice_pkg::NumDense; i++) begin
      logic [63:0] x;
      x = in_row_i.ints[i];
      meta_d.words[32*(1+i) +: 32] = x[63] ? 32'd0 : (x[62:31] != '0 ? 32'h7fffffff : x[31:0]);
    end
    for (int c = 0; c < sluice_pkg::NumSparse; c++) begin
      meta_d.words[32*(1+sluice_pkg::NumDense+c) +: 32] = cats_mod[c];
    end
  end

  for (genvar c = 0; c < sluice_pkg::NumSparse; c++) begin : gen_mod
    sluice_mod32 u_mod (
      .value_i(in_row_i.cats[c]),
      .n_i    (mod_n_i),
      .magic_i(mod_magic_i),
      .value_o(cats_mod[c])
    );
  end

  for (genvar i = 0; i < sluice_pkg::NumDense; i++) begin : gen_log
    sluice_log1p u_log (
      .clk_i,
      .rst_ni,
      .en_i(en),
      .x_i (in_row_i.ints[i]),
      .y_o (logs[i])
    );
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      valid_q <= '0;
      for (int s = 0; s < Lat; s++) meta_q[s] <= '0;
    end else if (en) begin
      valid_q[0] <= in_valid_i;
      meta_q[0]  <= meta_d;
      for (int s = 1; s < Lat; s++) begin
        valid_q[s] <= valid_q[s-1];
        meta_q[s]  <= meta_q[s-1];
      end
    end
  end

  always_comb begin
    out_row_o = meta_q[Lat-1];
    if (!dense_int_i) begin
      for (int i = 0; i < sluice_pkg::NumDense; i++) out_row_o.words[32*(1+i) +: 32] = logs[i];
    end
  end
  assign out_valid_o = valid_q[Lat-1];

endmodule
