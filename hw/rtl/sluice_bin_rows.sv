// Binary input rows: fixed-size records of little-endian 32-bit words, cut from the 512-bit stream
// at any alignment (tkeep contiguous from byte 0), the transfer ending at tlast.
//   Wide192 = 0: Meta's 160-byte rows, 40 words: label, 13 dense (int32), 26 ids.
//   Wide192 = 1: 192-byte rows of three beats: label, 13 dense, 2 pad | 16 ids | 10 ids, 6 pad.
// A label other than 0 or 1 is a bad label; bytes left over at the end of the transfer (a partial
// row) are one more line with the wrong number of fields, as sluice reads Meta's rows. Rows leave
// in order as prow_t with their index, then the end marker.
//
// seed_i (with Wide192): the seed kernel's framing. Its stages count beats modulo 3 and ignore
// tlast and tkeep: every beat is 64 bytes, a row is three consecutive beats, and a row may span two
// transfers (the beats of an unfinished row wait for the next transfer; tlast only closes the
// transfer's output). No label check (the label is a lane like the others) and no partial-row error.
// label_word_o: the row's first word, for the seed's transform of the label lane.
module sluice_bin_rows (
  input  logic                           clk_i,
  input  logic                           rst_ni,
  input  logic                           wide192_i,
  input  logic                           seed_i,
  input  logic                           s_tvalid_i,
  output logic                           s_tready_o,
  input  logic [sluice_pkg::BeatBytes*8-1:0] s_tdata_i,
  input  logic [sluice_pkg::BeatBytes-1:0]   s_tkeep_i,
  input  logic                           s_tlast_i,
  output logic                           row_valid_o,
  input  logic                           row_ready_i,
  output sluice_pkg::prow_t              row_o,
  output logic [sluice_pkg::RowNoW-1:0]  row_no_o,
  output logic [31:0]                    label_word_o
);

  localparam int unsigned BufBytes = 256;

  logic [BufBytes*8-1:0] buf_q, buf_d;
  logic [8:0]            fill_q, fill_d;    // bytes held
  logic                  last_q, last_d;    // the transfer's last beat is in
  logic [sluice_pkg::RowNoW-1:0] row_no_q;
  logic [8:0]            rec;               // record size
  logic                  have_row, partial, emit_eot, take, load;
  logic [6:0]            nbytes;

  assign rec      = wide192_i ? 9'd192 : 9'd160;
  assign have_row = fill_q >= rec;
  assign partial  = last_q & !have_row & (fill_q != '0) & !seed_i;
  assign emit_eot = last_q & (seed_i ? !have_row : fill_q == '0);

  always_comb begin
    nbytes = '0;
    for (int b = 0; b < sluice_pkg::BeatBytes; b++) nbytes = nbytes + 7'(s_tkeep_i[b]);
    if (seed_i) nbytes = 7'(sluice_pkg::BeatBytes);
  end

  // The row (or the partial-row error, or the end marker) on offer.
  logic [31:0] w [48];
  always_comb begin
    for (int i = 0; i < 48; i++) w[i] = buf_q[32*i +: 32];
  end

  always_comb begin
    row_o       = '0;
    row_o.field = sluice_pkg::FieldNone;
    row_o.err   = sluice_pkg::ErrOk;
    row_o.label = w[0][0];
    for (int i = 0; i < sluice_pkg::NumDense; i++) row_o.ints[i] = {{32{w[1+i][31]}}, w[1+i]};
    for (int c = 0; c < sluice_pkg::NumSparse; c++) begin
      row_o.cats[c] = wide192_i ? w[16 + c] : w[14 + c];
    end
    if (w[0][31:1] != '0 && !seed_i) begin
      row_o.err   = sluice_pkg::ErrBadLabel;
      row_o.field = 6'd0;
    end
    if (partial) begin
      row_o       = '0;
      row_o.err   = sluice_pkg::ErrFieldCount;
      row_o.field = sluice_pkg::FieldNone;
    end
    if (emit_eot) begin
      row_o     = '0;
      row_o.eot = 1'b1;
    end
  end
  assign row_valid_o = have_row | partial | emit_eot;
  assign row_no_o    = row_no_q;
  assign label_word_o = w[0];
  assign take        = row_valid_o & row_ready_i;

  // Room for a beat once the row on offer (if taken) has left.
  always_comb begin
    buf_d  = buf_q;
    fill_d = fill_q;
    last_d = last_q;
    if (take) begin
      if (emit_eot) begin
        last_d = 1'b0;
      end else if (partial) begin
        buf_d  = '0;
        fill_d = '0;
      end else begin
        buf_d  = buf_q >> {rec, 3'b000};
        fill_d = fill_q - rec;
      end
    end
    if (load) begin
      buf_d  = buf_d | ({{(BufBytes * 8 - 512){1'b0}}, s_tdata_i & (seed_i ? {512{1'b1}} : keep_mask(s_tkeep_i))} << {fill_d, 3'b000});
      fill_d = fill_d + 9'(nbytes);
      last_d = s_tlast_i;
    end
  end
  assign s_tready_o = !last_q & (fill_q <= 9'(BufBytes - sluice_pkg::BeatBytes));
  assign load       = s_tvalid_i & s_tready_o;

  function automatic logic [511:0] keep_mask(logic [63:0] keep);
    for (int b = 0; b < 64; b++) keep_mask[b*8 +: 8] = {8{keep[b]}};
  endfunction

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      buf_q    <= '0;
      fill_q   <= '0;
      last_q   <= 1'b0;
      row_no_q <= '0;
    end else begin
      buf_q  <= buf_d;
      fill_q <= fill_d;
      last_q <= last_d;
      if (take) row_no_q <= emit_eot ? '0 : row_no_q + 1'b1;
    end
  end

endmodule
