// The per-value transforms of a parsed row, one row per cycle: dense ints to float32 ln(x + 1) of
// Neg2Zero(x) (DenseMode 0) or to Neg2Zero(x) saturated to int32 (DenseMode 1), ids modulo a
// runtime n. Pipelined (the latency of sluice_log1p); the whole pipeline holds while the output
// is stalled.
//
// seed_i: the seed kernel's lanes (192-byte rows). Its Neg2Zero and Log stages work on the 16
// int32 lanes of a row's first beat, the label included, and its ids are value & 0x3FF. The log is
// defined here as the float32 logf((float)x + 1.0f) of x = Neg2Zero(lane), with round-to-nearest-
// even for the conversion and the addition and logf correctly rounded: a = fl(fl(x) + 1) is an
// integer of at most 2^31, so the log is sluice_log1p of a - 1 (exact). A 14th log unit takes the
// label lane; the 2 pad lanes and the 6 pad ids are not part of the packed row.
module sluice_row_xform
(
  input  logic              clk_i,
  input  logic              rst_ni,
  input  logic              dense_int_i,   // 1: clamped int32 instead of the log
  input  logic              seed_i,        // 1: the seed kernel's lanes (overrides dense_int_i)
  input  logic [31:0]       label_word_i,  // the label lane's int32 (seed_i)
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

  localparam int unsigned Lat = 13;  // sluice_log1p's pipeline depth

  logic en;
  assign en         = out_ready_i | ~out_valid_o;
  assign in_ready_o = en;

  // Everything but the logs goes through a delay line of the same length.
  sluice_pkg::xrow_t            meta_d;
  logic [Lat-1:0]   valid_q;
  sluice_pkg::xrow_t            meta_q [Lat];
  logic [sluice_pkg::NumDense:0][31:0] logs;   // [NumDense]: the label lane (seed_i)
  logic [sluice_pkg::NumDense:0][63:0] log_in;

  // Round a non-negative integer below 2^32 to float32's 24 significant bits, to nearest, ties to
  // even (the result is an integer again).
  function automatic logic [31:0] round24(logic [31:0] v);
    logic [31:0] mask, low, half;
    round24 = v;
    for (int sh = 1; sh <= 8; sh++) begin
      if ((v >> (23 + sh)) == 32'd1) begin
        mask = (32'd1 << sh) - 32'd1;
        low  = v & mask;
        half = 32'd1 << (sh - 1);
        round24 = v & ~mask;
        if (low > half || (low == half && v[sh])) round24 = round24 + (32'd1 << sh);
      end
    end
  endfunction

  // The seed's log argument as sluice_log1p's input: fl(fl(Neg2Zero(x)) + 1) - 1.
  function automatic logic [63:0] seed_arg(logic [31:0] x);
    logic [31:0] a;
    a = round24(round24(x[31] ? 32'd0 : x) + 32'd1);
    seed_arg = {32'd0, a - 32'd1};
  endfunction

  always_comb begin
    for (int i = 0; i < sluice_pkg::NumDense; i++) begin
      log_in[i] = seed_i ? seed_arg(in_row_i.ints[i][31:0]) : in_row_i.ints[i];
    end
    log_in[sluice_pkg::NumDense] = seed_arg(label_word_i);
  end
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
      meta_d.words[32*(1+sluice_pkg::NumDense+c) +: 32] =
          seed_i ? {22'd0, in_row_i.cats[c][9:0]} : cats_mod[c];
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

  for (genvar i = 0; i <= sluice_pkg::NumDense; i++) begin : gen_log
    sluice_log1p u_log (
      .clk_i,
      .rst_ni,
      .en_i(en),
      .x_i (log_in[i]),
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
    if (!dense_int_i || seed_i) begin
      for (int i = 0; i < sluice_pkg::NumDense; i++) out_row_o.words[32*(1+i) +: 32] = logs[i];
    end
    if (seed_i) out_row_o.words[31:0] = logs[sluice_pkg::NumDense];
  end
  assign out_valid_o = valid_q[Lat-1];

endmodule
