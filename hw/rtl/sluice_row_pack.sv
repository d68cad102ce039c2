// Packs good rows (160 bytes each) back to back into 512-bit beats, and sends an error record for
// each malformed line on the error stream instead. At the end of a transfer the last beat (partial
// tkeep, or a null beat when nothing is left) carries tlast.
module sluice_row_pack
(
  input  logic                   clk_i,
  input  logic                   rst_ni,
  input  logic                   in_valid_i,
  output logic                   in_ready_o,
  input  sluice_pkg::xrow_t                  in_row_i,
  // rows out
  output logic                   m_tvalid_o,
  input  logic                   m_tready_i,
  output logic [sluice_pkg::BeatBytes*8-1:0] m_tdata_o,
  output logic [sluice_pkg::BeatBytes-1:0]   m_tkeep_o,
  output logic                   m_tlast_o,
  // error records out
  output logic                   e_tvalid_o,
  input  logic                   e_tready_i,
  output sluice_pkg::err_rec_t               e_tdata_o
);

  // Fill level in 32-byte units: a row is 5 units, a beat 2; at most 2 + 5 are held.
  localparam int unsigned Units = 7;

  logic [Units*256-1:0] buf_q, buf_d;
  logic [2:0]           fill_q, fill_d, fill_after;
  logic                 is_eot, is_err, is_row, final_beat, emit, take_row;

  assign is_eot = in_valid_i & in_row_i.eot;
  assign is_err = in_valid_i & !in_row_i.eot & (in_row_i.err != sluice_pkg::ErrOk);
  assign is_row = in_valid_i & !in_row_i.eot & (in_row_i.err == sluice_pkg::ErrOk);

  assign final_beat = is_eot & (fill_q <= 3'd2);
  assign m_tvalid_o = final_beat | (fill_q >= 3'd2);
  assign m_tlast_o  = final_beat;
  assign m_tdata_o  = buf_q[511:0];
  assign m_tkeep_o  = final_beat ? ((fill_q == 3'd2) ? {64{1'b1}} :
                                    (fill_q == 3'd1) ? {32'd0, {32{1'b1}}} : 64'd0)
                                 : {64{1'b1}};
  assign emit       = m_tvalid_o & m_tready_i;
  assign fill_after = emit ? ((fill_q >= 3'd2) ? fill_q - 3'd2 : 3'd0) : fill_q;
  assign take_row   = is_row & (fill_after <= 3'd2);

  assign e_tvalid_o = is_err;
  always_comb begin
    e_tdata_o        = '0;
    e_tdata_o.row_no = in_row_i.row_no;
    e_tdata_o.err    = in_row_i.err;
    e_tdata_o.field  = in_row_i.field;
  end

  assign in_ready_o = is_eot ? (emit & final_beat) :
                      is_err ? e_tready_i : (fill_after <= 3'd2);

  always_comb begin
    buf_d  = emit ? (buf_q >> 512) : buf_q;
    fill_d = fill_after;
    if (take_row) begin
      buf_d  = buf_d | ({{(Units * 256 - sluice_pkg::RowBits){1'b0}}, in_row_i.words} << {fill_after, 8'd0});
      fill_d = fill_after + 3'd5;
    end
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      buf_q  <= '0;
      fill_q <= '0;
    end else begin
      buf_q  <= buf_d;
      fill_q <= fill_d;
    end
  end

endmodule
