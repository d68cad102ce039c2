// float32 ln(x + 1) of Neg2Zero(x) for a signed 64-bit x, correctly rounded (the bits of
// sluice::dense_value). Fixed point with 100 fraction bits: a = x + 1 = 2^k (1 + f); four table
// stages (sluice_log_rom) reduce 1 + f towards 1, a cubic finishes ln(1 + t), then k ln 2 and the
// tables' logarithms are added and the sum is rounded to float32. hw/model/log1p_model.hpp is the
// bit-accurate model (same widths, same floor shifts).
//
// A pipeline of 13 cycles of en_i (its latency) advancing when en_i is high; no
// internal valid tracking (the parent carries it). Stages: normalise; four table stages of two
// cycles (lookup, multiply); square; cube; sum; round.
module sluice_log1p (
  input  logic        clk_i,
  input  logic        rst_ni,
  input  logic        en_i,
  input  logic [63:0] x_i,
  output logic [31:0] y_o
);

  typedef logic signed [127:0] s128_t;

  // ln 2 * 2^108, rounded.
  localparam s128_t Ln2Ext = s128_t'(108'hb17217f7d1cf79abc9e3b39803f);

  // ---- stage 0: normalise ----------------------------------------------------------------------
  logic        zero_d;
  logic [63:0] a_d;
  logic [5:0]  k_d;
  logic [63:0] frac_d;

  assign zero_d = x_i[63] | (x_i == '0);
  assign a_d    = zero_d ? 64'd2 : x_i + 64'd1;

  always_comb begin
    k_d = '0;
    for (int i = 1; i < 64; i++) begin
      if (a_d[i]) k_d = 6'(i);
    end
  end
  assign frac_d = (a_d << (7'd64 - {1'b0, k_d})) >> 1;

  // Pipeline registers. Stage 0 normalises; each table stage s (1 to 4) takes two cycles: A looks
  // up the table (the index rounds t) into r_q, l_q; B multiplies t by R and adds -ln R to the sum.
  // Index 2s-1 holds the state after A of stage s, index 2s after B (index 0: after stage 0).
  logic        zero_q [9];
  logic [5:0]  k_q;       // k, used by stage 1's lookup cycle only
  s128_t       t_q    [9];
  s128_t       sum_q  [9];

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      zero_q[0] <= 1'b1;
      k_q       <= '0;
      t_q[0]    <= '0;
      sum_q[0]  <= '0;
    end else if (en_i) begin
      zero_q[0] <= zero_d;
      k_q       <= k_d;
      t_q[0]    <= s128_t'({frac_d, 37'b0});
      sum_q[0]  <= '0;
    end
  end

  // ---- stages 1 to 4: table reduction, two cycles each ------------------------------------------
  for (genvar s = 1; s <= 4; s++) begin : gen_stage
    localparam int unsigned SBits = (s == 1) ? 12 : 8 * s + 8;   // 12, 24, 32, 40
    localparam int unsigned Shift = 100 - (8 * s - 1);           // index = round(t * 2^(8s-1))
    localparam int unsigned IA    = 2 * s - 1;                   // the registers after A
    localparam int unsigned IB    = 2 * s;                       // the registers after B
    logic [8:0]   idx;
    logic [40:0]  r, r_q;
    logic [103:0] l, l_q;
    s128_t        prod, t_next, l_ext, r_ext, d_ext, sum_a;

    // ---- A: the table lookup
    if (s == 1) begin : gen_idx1
      assign idx = {2'b00, t_q[IA-1][99:93]};
    end else begin : gen_idxn
      s128_t t_round;
      logic  unused_round;
      assign t_round      = (t_q[IA-1] + (s128_t'(1) <<< (Shift - 1))) >>> Shift;
      assign idx          = t_round[8:0];
      assign unused_round = ^t_round[127:9];
    end

    sluice_log_rom #(.Stage(s)) u_rom (
      .idx_i(idx),
      .r_o  (r),
      .l_o  (l)
    );

    // k ln 2 joins the tables' sum here (the sum is 0 before stage 1): the adds are modulo 2^128,
    // so the order of the terms does not change the result.
    if (s == 1) begin : gen_kln2
      assign sum_a = (s128_t'({122'b0, k_q}) * Ln2Ext) >>> 8;
    end else begin : gen_sum
      assign sum_a = sum_q[IA-1];
    end

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        zero_q[IA] <= 1'b1;
        t_q[IA]    <= '0;
        sum_q[IA]  <= '0;
        r_q        <= '0;
        l_q        <= '0;
      end else if (en_i) begin
        zero_q[IA] <= zero_q[IA-1];
        t_q[IA]    <= t_q[IA-1];
        sum_q[IA]  <= sum_a;
        r_q        <= r;
        l_q        <= l;
      end
    end

    // ---- B: the reduction step
    assign r_ext  = s128_t'({87'b0, r_q});
    assign l_ext  = s128_t'({{24{l_q[103]}}, l_q});
    assign d_ext  = (r_ext - (s128_t'(1) <<< SBits)) <<< (100 - SBits);
    assign prod   = t_q[IA] * r_ext;
    assign t_next = (prod >>> SBits) + d_ext;

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        zero_q[IB] <= 1'b1;
        t_q[IB]    <= '0;
        sum_q[IB]  <= '0;
      end else if (en_i) begin
        zero_q[IB] <= zero_q[IA];
        t_q[IB]    <= t_next;
        sum_q[IB]  <= sum_q[IA] + l_ext;
      end
    end
  end

  // ---- stages 5 to 7: ln(1 + t) = t - t^2/2 + t^3/3, plus k ln 2 and the tables -----------------
  // v = (k ln 2 + tables) + t - sq/2 + cube/3, one multiply per cycle, the adds spread beside them.
  s128_t t4, t_hi, sq, cube, cube3;
  s128_t sq_q, t5_q, acc5_q, cube_q, acc6_q, v_q;
  logic  zero5_q, zero6_q, zero7_q;

  assign t4       = t_q[8];

  // stage 5: the square
  assign t_hi  = t4 >>> 20;
  assign sq    = (t4 * t_hi) >>> 80;

  // stage 6: the cube
  assign cube  = (sq_q * t5_q) >>> 100;

  // stage 7: a third of it
  assign cube3 = (cube_q * s128_t'(21845)) >>> 16;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      sq_q    <= '0;
      t5_q    <= '0;
      acc5_q  <= '0;
      zero5_q <= 1'b1;
      cube_q  <= '0;
      acc6_q  <= '0;
      zero6_q <= 1'b1;
      v_q     <= '0;
      zero7_q <= 1'b1;
    end else if (en_i) begin
      sq_q    <= sq;
      t5_q    <= t4;
      acc5_q  <= sum_q[8] + t4;
      zero5_q <= zero_q[8];
      cube_q  <= cube;
      acc6_q  <= acc5_q - (sq_q >>> 1);
      zero6_q <= zero5_q;
      v_q     <= acc6_q + cube3;
      zero7_q <= zero6_q;
    end
  end

  // ---- stage 8: round to float32 ---------------------------------------------------------------
  logic [6:0]  p;
  logic [23:0] mant_t;
  logic        rnd;
  logic [24:0] mant_r;
  logic [7:0]  expo;
  logic [31:0] y_d, y_q;

  always_comb begin
    p = 7'd99;
    for (int i = 99; i < 107; i++) begin  // ln 2 <= v < 44: the leading one is bit 99 .. 105
      if (v_q[i]) p = 7'(i);
    end
  end
  assign mant_t = 24'(v_q >> (p - 7'd23));
  assign rnd    = v_q[p - 7'd24];
  assign mant_r = {1'b0, mant_t} + 25'(rnd);
  assign expo   = 8'(p) - 8'd100 + 8'd127 + 8'(mant_r[24]);
  assign y_d    = zero7_q ? 32'd0 :
                  {1'b0, expo, mant_r[24] ? mant_r[23:1] : mant_r[22:0]};

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      y_q <= '0;
    end else if (en_i) begin
      y_q <= y_d;
    end
  end
  assign y_o = y_q;

endmodule
