// The structural stage: finds the newlines of each 512-bit beat and hands every line's bytes to
// the lane that owns the line (line n -> lane n mod NumLanes), as segments of the beat. Up to
// SegsPerCycle lines may end in one cycle; a beat with more newlines takes several cycles. The
// last line of a transfer ends at tlast whether or not it has a '\n'; a transfer ending in '\n'
// has no empty line after it. After the last beat an end marker goes to the lane whose turn is next.
//
// tkeep must be contiguous from byte 0 (a partial beat carries its bytes in the low lanes).
module sluice_tsv_split
#(
  parameter int unsigned NumLanes     = 16,  // a power of two
  parameter int unsigned SegsPerCycle = 4    // < NumLanes
) (
  input  logic                   clk_i,
  input  logic                   rst_ni,
  // text in
  input  logic                   s_tvalid_i,
  output logic                   s_tready_o,
  input  logic [sluice_pkg::BeatBytes*8-1:0] s_tdata_i,
  input  logic [sluice_pkg::BeatBytes-1:0]   s_tkeep_i,
  input  logic                   s_tlast_i,
  // segments out, one port per lane
  output logic [NumLanes-1:0]    seg_valid_o,
  input  logic [NumLanes-1:0]    seg_ready_i,
  output logic [NumLanes-1:0][sluice_pkg::SegBits-1:0] seg_o  // lane l's sluice_pkg::seg_t
);

  localparam int unsigned LaneW = $clog2(NumLanes);
  localparam int unsigned NSeg  = SegsPerCycle;

  // The beat being split.
  logic                   full_q;
  logic [sluice_pkg::BeatBytes*8-1:0] data_q;
  logic [6:0]             nbytes_q;
  logic                   last_q;
  logic [sluice_pkg::BeatBytes-1:0]   rem_q;       // its newlines at or after pos_q
  logic [6:0]             pos_q;       // first byte not yet handed out
  logic [LaneW-1:0]       lane_q;      // owner of the line that continues at pos_q
  logic                   open_q;      // that line already has bytes (from earlier beats)
  logic                   eot_q;       // the end marker is due

  // Newlines at or after pos_q, the first NSeg of them.
  logic [sluice_pkg::BeatBytes-1:0] rem [NSeg+1];
  logic [6:0]           nlp [NSeg];
  logic [NSeg-1:0]      found;
  logic                 more;

  always_comb begin
    rem[0] = rem_q;
    for (int j = 0; j < NSeg; j++) begin
      nlp[j]   = 7'd0;
      found[j] = rem[j] != '0;
      for (int b = sluice_pkg::BeatBytes - 1; b >= 0; b--) begin
        if (rem[j][b]) nlp[j] = 7'(b);
      end
      rem[j+1] = rem[j] & (rem[j] - 64'd1);
    end
    more = rem[NSeg] != '0;
  end

  // The segments of this cycle: j < NSeg end at a newline; j = number found is the tail.
  logic [6:0]       start [NSeg+1];
  logic [NSeg:0]    use_seg;
  logic [NSeg:0]    seg_end;
  logic [6:0]       stop [NSeg+1];
  logic [$clog2(NSeg+2)-1:0] nfound;
  logic             tail_bytes, tail_row;

  always_comb begin
    nfound   = '0;
    start[0] = pos_q;
    for (int j = 0; j < NSeg; j++) begin
      if (found[j]) nfound = nfound + 1'b1;
      start[j+1] = nlp[j] + 7'd1;
    end
    for (int j = 0; j <= NSeg; j++) begin
      use_seg[j] = 1'b0;
      seg_end[j] = 1'b0;
      stop[j]    = nbytes_q;
      if (j < NSeg && found[j]) begin
        use_seg[j] = 1'b1;
        seg_end[j] = 1'b1;
        stop[j]    = nlp[j];
      end
    end
    // The tail: bytes after the last newline (none when more newlines wait in this beat).
    tail_bytes = start[nfound] < nbytes_q;
    tail_row   = last_q & (tail_bytes | (nfound == '0 & open_q));
    if (!more && (tail_bytes || tail_row)) begin
      use_seg[nfound] = 1'b1;
      seg_end[nfound] = last_q;
    end
  end

  // Route the segments to their lanes (distinct: NSeg + 1 <= NumLanes).
  logic [NumLanes-1:0] want;
  logic                fire;
  logic [LaneW-1:0]    tgt;
  sluice_pkg::seg_t    seg;

  always_comb begin
    want = '0;
    tgt  = '0;
    seg  = '0;
    for (int l = 0; l < NumLanes; l++) begin
      seg_o[l] = '0;
    end
    if (full_q && !eot_q) begin
      for (int l = 0; l < NumLanes; l++) begin
        for (int j = 0; j <= NSeg; j++) begin
          tgt = lane_q + LaneW'(j);
          if (use_seg[j] && tgt == LaneW'(l)) begin
            want[l]     = 1'b1;
            seg.data    = data_q;
            seg.start   = start[j];
            seg.stop    = stop[j];
            seg.row_end = seg_end[j];
            seg.eot     = 1'b0;
            seg_o[l]    = seg;
          end
        end
      end
    end else if (eot_q) begin
      for (int l = 0; l < NumLanes; l++) begin
        if (lane_q == LaneW'(l)) begin
          want[l]  = 1'b1;
          seg      = '0;
          seg.eot  = 1'b1;
          seg_o[l] = seg;
        end
      end
    end
  end

  assign fire        = (full_q | eot_q) & ((want & ~seg_ready_i) == '0);
  assign seg_valid_o = fire ? want : '0;

  // The beat is done when no newline is left over for another cycle.
  logic done, load;
  assign done       = fire & full_q & !eot_q & !more;
  assign load       = s_tvalid_i & s_tready_o;
  assign s_tready_o = !eot_q & (!full_q | done);

  logic [6:0] keep_count;
  always_comb begin
    keep_count = '0;
    for (int b = 0; b < sluice_pkg::BeatBytes; b++) keep_count = keep_count + 7'(s_tkeep_i[b]);
  end

  logic [sluice_pkg::BeatBytes-1:0] nl_in;
  always_comb begin
    for (int b = 0; b < sluice_pkg::BeatBytes; b++) nl_in[b] = s_tkeep_i[b] & (s_tdata_i[b*8 +: 8] == 8'h0a);
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      full_q   <= 1'b0;
      data_q   <= '0;
      nbytes_q <= '0;
      last_q   <= 1'b0;
      rem_q    <= '0;
      pos_q    <= '0;
      lane_q   <= '0;
      open_q   <= 1'b0;
      eot_q    <= 1'b0;
    end else begin
      if (eot_q && fire) begin
        eot_q  <= 1'b0;
        lane_q <= '0;
      end else if (fire && full_q) begin
        if (more) begin
          pos_q  <= nlp[NSeg-1] + 7'd1;
          rem_q  <= rem[NSeg];
          lane_q <= lane_q + LaneW'(NSeg);
          open_q <= 1'b0;
        end else begin
          lane_q <= lane_q + LaneW'(nfound) + LaneW'(tail_row);
          open_q <= last_q ? 1'b0 : (tail_bytes | (nfound == '0 & open_q));
          eot_q  <= last_q;
        end
      end
      if (done) full_q <= 1'b0;
      if (load) begin
        full_q   <= 1'b1;
        data_q   <= s_tdata_i;
        nbytes_q <= keep_count;
        last_q   <= s_tlast_i;
        rem_q    <= nl_in;
        pos_q    <= '0;
      end
    end
  end

endmodule
