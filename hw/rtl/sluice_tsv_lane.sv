// One parsing lane: takes the segments of the lines it owns (every NumLanes-th line) and parses
// them BytesPerCycle bytes per cycle, exactly as sluice::parse_row_reference: label, decimal ints
// (int64, empty = 0, overflow and bad bytes flagged), hex ids (up to 8 digits), the first bad field
// in field order, and the line-level checks (empty line, NUL byte, field count) that take
// precedence. A '\r' right before the end of the line is dropped; anywhere else it is an ordinary
// (bad) byte. Each finished line leaves as one sluice_pkg::prow_t, in line order; the end-of-transfer marker is
// passed on in its place in the order.
module sluice_tsv_lane
#(
  parameter int unsigned BytesPerCycle = 8,
  parameter int unsigned InDepth       = 8,
  parameter int unsigned OutDepth      = 2
) (
  input  logic              clk_i,
  input  logic              rst_ni,
  input  logic              seg_valid_i,
  output logic              seg_ready_o,
  input  sluice_pkg::seg_t  seg_i,
  output logic              row_valid_o,
  input  logic              row_ready_i,
  output sluice_pkg::prow_t row_o
);

  localparam logic [7:0] ChTab = 8'h09;
  localparam logic [7:0] ChCr  = 8'h0d;

  // Parser state of the line in progress.
  typedef struct packed {
    logic [5:0]                 fld;       // index of the field in progress
    logic                       extra;     // more than 40 fields
    logic                       nonempty;  // at least one byte (a dropped '\r' aside)
    logic                       nul;       // a NUL byte
    logic                       cr_pend;   // the last byte was '\r', not yet consumed
    logic [4:0]                 flen;      // bytes in the field, saturating at 31
    logic                       neg;       // the int field began with '-'
    logic                       bad;       // a byte not allowed in the field
    logic                       ovf;       // the int field is outside int64
    logic [63:0]                acc;       // the field's value so far
    sluice_pkg::row_err_e                   err;       // the first field error
    logic [5:0]                 err_fld;
    logic                       label;
    logic [sluice_pkg::NumDense-1:0][63:0]  ints;
    logic [sluice_pkg::NumSparse-1:0][31:0] cats;
  } st_t;
  // $bits(st_t), spelled out: the per-byte functions take and return the state as a plain vector
  // (a width mismatch here is a lint error where the vector and the struct meet).
  localparam int unsigned StBits = 93 + sluice_pkg::NumDense * 64 + sluice_pkg::NumSparse * 32;

  // ---- per-byte functions ----------------------------------------------------------------------

  function automatic logic [4:0] hex_val(logic [7:0] c);
    // {invalid, value}: '0'-'9' are 0x30-0x39, 'a'-'f' 0x61-0x66, 'A'-'F' 0x41-0x46
    logic [4:0] r;
    logic [7:0] l;
    l = c | 8'h20;
    if (c >= 8'h30 && c <= 8'h39) r = {1'b0, c[3:0]};
    else if (l >= 8'h61 && l <= 8'h66) r = {1'b0, c[3:0] + 4'd9};
    else r = 5'h10;
    hex_val = r;
  endfunction

  // The field in progress is complete: check it, store its value, start the next one.
  function automatic logic [StBits-1:0] end_field(logic [StBits-1:0] s_in);
    st_t        s;
    sluice_pkg::row_err_e   code;
    logic [4:0] idx;
    s    = s_in;
    code = sluice_pkg::ErrOk;
    if (!s.extra) begin
      if (s.fld == 6'd0) begin
        code = s.bad ? sluice_pkg::ErrBadLabel : sluice_pkg::ErrOk;
        s.label = s.acc[0];
      end else if (s.fld <= 6'(sluice_pkg::NumDense)) begin
        if (s.flen == 5'd0) code = sluice_pkg::ErrOk;
        else if (s.bad || (s.neg && s.flen == 5'd1)) code = sluice_pkg::ErrBadInt;
        else if (s.ovf) code = sluice_pkg::ErrIntOverflow;
        idx = 5'(s.fld - 6'd1);
        s.ints[4'(idx)] = (s.flen == 5'd0) ? 64'd0 : (s.neg ? 64'd0 - s.acc : s.acc);
      end else begin
        if (s.bad) code = sluice_pkg::ErrBadHex;
        else if (s.flen > 5'd8) code = sluice_pkg::ErrHexTooLong;
        idx = 5'(s.fld - 6'(sluice_pkg::NumDense + 1));
        s.cats[idx] = s.acc[31:0];
      end
      if (s.err == sluice_pkg::ErrOk && code != sluice_pkg::ErrOk) begin
        s.err     = code;
        s.err_fld = s.fld;
      end
    end
    s.flen = '0;
    s.neg  = 1'b0;
    s.bad  = 1'b0;
    s.ovf  = 1'b0;
    s.acc  = '0;
    end_field = s;
  endfunction

  // One byte of the line (never '\n').
  function automatic logic [StBits-1:0] consume(logic [StBits-1:0] s_in, logic [7:0] c);
    st_t         s;
    logic [67:0] next;
    logic [67:0] limit;
    logic [4:0]  h;
    s = s_in;
    s.nonempty = 1'b1;
    if (c == 8'h00) s.nul = 1'b1;
    if (c == ChTab) begin
      s = end_field(s);
      if (s.fld == 6'(sluice_pkg::NumFields - 1)) s.extra = 1'b1;
      else s.fld = s.fld + 6'd1;
    end else if (!s.extra) begin
      if (s.fld == 6'd0) begin
        if (s.flen == 5'd0 && (c == 8'h30 || c == 8'h31)) s.acc = {63'd0, c[0]};
        else s.bad = 1'b1;
      end else if (s.fld <= 6'(sluice_pkg::NumDense)) begin
        if (s.flen == 5'd0 && c == 8'h2d) begin
          s.neg = 1'b1;
        end else if (c >= 8'h30 && c <= 8'h39) begin
          next  = {4'd0, s.acc} * 68'd10 + 68'(c[3:0]);
          limit = s.neg ? 68'h8000000000000000 : 68'h7fffffffffffffff;
          if (next > limit) s.ovf = 1'b1;
          else if (!s.ovf) s.acc = next[63:0];
        end else begin
          s.bad = 1'b1;
        end
      end else begin
        h = hex_val(c);
        if (h[4]) s.bad = 1'b1;
        s.acc = {32'd0, s.acc[27:0], h[3:0]};
      end
      if (s.flen != 5'h1f) s.flen = s.flen + 5'd1;
    end
    consume = s;
  endfunction

  // One byte with the '\r' rule: a '\r' waits for the next byte to know whether it ends the line.
  function automatic logic [StBits-1:0] step(logic [StBits-1:0] s_in, logic [7:0] c);
    st_t s;
    s = s_in;
    if (s.cr_pend) begin
      s.cr_pend = 1'b0;
      s = consume(s, ChCr);
    end
    if (c == ChCr) s.cr_pend = 1'b1;
    else s = consume(s, c);
    step = s;
  endfunction

  function automatic logic [StBits-1:0] fresh();
    st_t s;
    s     = '0;
    s.err = sluice_pkg::ErrOk;
    fresh = s;
  endfunction

  // ---- input FIFO ------------------------------------------------------------------------------
  logic seg_valid, seg_pop;
  sluice_pkg::seg_t seg;

  sluice_fifo #(.Width(sluice_pkg::SegBits), .Depth(InDepth)) u_in_fifo (
    .clk_i,
    .rst_ni,
    .in_valid_i (seg_valid_i),
    .in_ready_o (seg_ready_o),
    .in_data_i  (seg_i),
    .out_valid_o(seg_valid),
    .out_ready_i(seg_pop),
    .out_data_o (seg)
  );

  // ---- output FIFO -----------------------------------------------------------------------------
  logic  out_push, out_ready;
  sluice_pkg::prow_t out_row;

  sluice_fifo #(.Width(sluice_pkg::ProwBits), .Depth(OutDepth)) u_out_fifo (
    .clk_i,
    .rst_ni,
    .in_valid_i (out_push),
    .in_ready_o (out_ready),
    .in_data_i  (out_row),
    .out_valid_o(row_valid_o),
    .out_ready_i(row_ready_i),
    .out_data_o (row_o)
  );

  // ---- the parser ------------------------------------------------------------------------------
  st_t        st_q, st_d, st_bytes, st_end;
  logic [6:0] off_q, off_d;    // bytes of the head segment already parsed
  logic [6:0] pos, left;
  logic       last_chunk, advance;
  logic [sluice_pkg::BeatBytes*8-1:0] window;

  assign pos        = seg.start + off_q;
  assign left       = (seg.stop > pos) ? seg.stop - pos : 7'd0;
  assign last_chunk = left <= 7'(BytesPerCycle);
  assign window     = seg.data >> {pos[5:0], 3'b000};

  always_comb begin
    st_bytes = st_q;
    for (int j = 0; j < BytesPerCycle; j++) begin
      if (7'(j) < left) st_bytes = step(st_bytes, window[j*8 +: 8]);
    end
  end

  // End of the line: drop a pending '\r', close the last field, decide the reason.
  always_comb begin
    st_end = st_bytes;
    st_end.cr_pend = 1'b0;
    st_end = end_field(st_end);
    out_row = '0;
    out_row.label = st_end.label;
    out_row.ints  = st_end.ints;
    out_row.cats  = st_end.cats;
    out_row.err   = st_end.err;
    out_row.field = st_end.err_fld;
    if (!st_end.nonempty) begin
      out_row.err   = sluice_pkg::ErrEmptyLine;
      out_row.field = sluice_pkg::FieldNone;
    end else if (st_end.nul) begin
      out_row.err   = sluice_pkg::ErrNulByte;
      out_row.field = sluice_pkg::FieldNone;
    end else if (st_end.extra || st_end.fld != 6'(sluice_pkg::NumFields - 1)) begin
      out_row.err   = sluice_pkg::ErrFieldCount;
      out_row.field = sluice_pkg::FieldNone;
    end
    if (seg.eot) begin
      out_row     = '0;
      out_row.eot = 1'b1;
    end
  end

  // A cycle advances unless it must hand a row (or the end marker) to a full output FIFO.
  assign advance  = seg_valid & (!(seg.eot | (last_chunk & seg.row_end)) | out_ready);
  assign out_push = seg_valid & (seg.eot | (last_chunk & seg.row_end)) & out_ready;
  assign seg_pop  = advance & (seg.eot | last_chunk);

  always_comb begin
    st_d  = st_q;
    off_d = off_q;
    if (advance && !seg.eot) begin
      if (last_chunk) begin
        off_d = '0;
        st_d  = seg.row_end ? fresh() : st_bytes;
      end else begin
        off_d = off_q + 7'(BytesPerCycle);
        st_d  = st_bytes;
      end
    end
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      st_q  <= fresh();
      off_q <= '0;
    end else begin
      st_q  <= st_d;
      off_q <= off_d;
    end
  end

endmodule
