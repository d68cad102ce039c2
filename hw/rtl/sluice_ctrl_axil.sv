// AXI4-Lite control port of the core (64-bit data, registers at 8-byte steps):
//   0x00 ctrl       rw  bit 0: dense values as clamped int32 (else float32 ln(x + 1));
//                       bit 1: the seed kernel's lanes in mode 2 (see sluice_bin_rows, sluice_row_xform)
//   0x08 mod_n      rw  ids modulo n (0: none)
//   0x10 mod_magic  rw  floor((2^64 - 1) / n) + 1, written by the host with mod_n
//   0x18 err_count  ro  error records waiting
//   0x20 err_pop    ro  the oldest error record (reading removes it); 0 when none
//   0x28 done       ro  transfers finished (output tlast beats) since reset
//   0x30 out_bytes  ro  bytes of packed rows the last finished transfer produced
//   0x38 mode       rw  input: 0 TSV text, 1 Meta's 160-byte rows, 2 192-byte rows
//   0x40 vocab      rw  bit 0: first-seen ids (sluice_vocab); writing bit 1 restarts the numbering
//   0x48 vocab_base rw  byte address of the tables in card memory
//   0x50 vocab_bits rw  log2 of the entries per column's table (1 .. 24)
//   0x58 vocab_full ro  a column's table was full (cleared by a restart)
// Error records (see sluice_pkg::err_rec_t) wait in a FIFO; when it is full the core holds its
// error stream, and with it the pipeline, until the host reads records out.
module sluice_ctrl_axil #(
  parameter int unsigned ErrDepth = 1024
) (
  input  logic        clk_i,
  input  logic        rst_ni,
  // AXI4-Lite slave
  input  logic [7:0]  awaddr_i,
  input  logic        awvalid_i,
  output logic        awready_o,
  input  logic [63:0] wdata_i,
  input  logic [7:0]  wstrb_i,
  input  logic        wvalid_i,
  output logic        wready_o,
  output logic [1:0]  bresp_o,
  output logic        bvalid_o,
  input  logic        bready_i,
  input  logic [7:0]  araddr_i,
  input  logic        arvalid_i,
  output logic        arready_o,
  output logic [63:0] rdata_o,
  output logic [1:0]  rresp_o,
  output logic        rvalid_o,
  input  logic        rready_i,
  // to and from the core
  output logic [1:0]  mode_o,
  output logic        vocab_en_o,
  output logic        vocab_clear_o,
  output logic [63:0] vocab_base_o,
  output logic [4:0]  vocab_tbits_o,
  input  logic        vocab_full_i,
  output logic        dense_int_o,
  output logic        seed_o,
  output logic [63:0] mod_n_o,
  output logic [63:0] mod_magic_o,
  input  logic        err_valid_i,
  output logic        err_ready_o,
  input  logic [63:0] err_data_i,
  input  logic        out_beat_i,   // an output beat is accepted
  input  logic [6:0]  out_bytes_i,  // its valid bytes
  input  logic        done_i        // ... and it is the transfer's last
);

  localparam int unsigned CntW = $clog2(ErrDepth) + 1;

  logic [1:0]  ctrl_q;
  logic [1:0]  mode_q;
  logic        vocab_en_q, vocab_clear_q;
  logic [63:0] vocab_base_q;
  logic [4:0]  vocab_tbits_q;
  logic [63:0] mod_n_q, mod_magic_q, done_q, rdata_q, run_bytes_q, last_bytes_q;
  logic        bvalid_q, rvalid_q;
  logic        wr, rd, pop;
  logic        err_valid;
  logic [63:0] err_head;
  logic [CntW-1:0] err_count_q;
  logic        unused_addr;

  assign unused_addr = ^{awaddr_i[2:0], araddr_i[2:0]};  // 64-bit registers: byte lanes by wstrb

  assign wr        = awvalid_i & wvalid_i & !bvalid_q;
  assign awready_o = wr;
  assign wready_o  = wr;
  assign bvalid_o  = bvalid_q;
  assign bresp_o   = 2'b00;
  assign rd        = arvalid_i & !rvalid_q;
  assign arready_o = rd;
  assign rvalid_o  = rvalid_q;
  assign rdata_o   = rdata_q;
  assign rresp_o   = 2'b00;
  assign pop       = rd & (araddr_i[7:3] == 5'd4) & err_valid;

  function automatic logic [63:0] merge(logic [63:0] old, logic [63:0] data, logic [7:0] strb);
    for (int b = 0; b < 8; b++) merge[b*8 +: 8] = strb[b] ? data[b*8 +: 8] : old[b*8 +: 8];
  endfunction

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      ctrl_q      <= '0;
      mode_q      <= '0;
      vocab_en_q    <= 1'b0;
      vocab_clear_q <= 1'b0;
      vocab_base_q  <= '0;
      vocab_tbits_q <= 5'd16;
      mod_n_q     <= '0;
      mod_magic_q <= '0;
      done_q      <= '0;
      run_bytes_q  <= '0;
      last_bytes_q <= '0;
      rdata_q     <= '0;
      bvalid_q    <= 1'b0;
      rvalid_q    <= 1'b0;
    end else begin
      vocab_clear_q <= wr && awaddr_i[7:3] == 5'd8 && wstrb_i[0] && wdata_i[1];
      if (wr) begin
        unique case (awaddr_i[7:3])
          5'd0: ctrl_q      <= wstrb_i[0] ? wdata_i[1:0] : ctrl_q;
          5'd1: mod_n_q     <= merge(mod_n_q, wdata_i, wstrb_i);
          5'd2: mod_magic_q <= merge(mod_magic_q, wdata_i, wstrb_i);
          5'd7: mode_q      <= wstrb_i[0] ? wdata_i[1:0] : mode_q;
          5'd8: vocab_en_q  <= wstrb_i[0] ? wdata_i[0] : vocab_en_q;
          5'd9: vocab_base_q <= merge(vocab_base_q, wdata_i, wstrb_i);
          5'd10: vocab_tbits_q <= wstrb_i[0] ? wdata_i[4:0] : vocab_tbits_q;
          default: ;
        endcase
        bvalid_q <= 1'b1;
      end else if (bready_i) begin
        bvalid_q <= 1'b0;
      end
      if (rd) begin
        unique case (araddr_i[7:3])
          5'd0:    rdata_q <= {62'd0, ctrl_q};
          5'd1:    rdata_q <= mod_n_q;
          5'd2:    rdata_q <= mod_magic_q;
          5'd3:    rdata_q <= 64'(err_count_q);
          5'd4:    rdata_q <= err_valid ? err_head : 64'd0;
          5'd5:    rdata_q <= done_q;
          5'd6:    rdata_q <= last_bytes_q;
          5'd7:    rdata_q <= {62'd0, mode_q};
          5'd8:    rdata_q <= {63'd0, vocab_en_q};
          5'd9:    rdata_q <= vocab_base_q;
          5'd10:   rdata_q <= {59'd0, vocab_tbits_q};
          5'd11:   rdata_q <= {63'd0, vocab_full_i};
          default: rdata_q <= '0;
        endcase
        rvalid_q <= 1'b1;
      end else if (rready_i) begin
        rvalid_q <= 1'b0;
      end
      if (done_i) done_q <= done_q + 64'd1;
      if (out_beat_i) begin
        if (done_i) begin
          last_bytes_q <= run_bytes_q + 64'(out_bytes_i);
          run_bytes_q  <= '0;
        end else begin
          run_bytes_q <= run_bytes_q + 64'(out_bytes_i);
        end
      end
    end
  end

  logic push;
  assign push = err_valid_i & err_ready_o;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      err_count_q <= '0;
    end else begin
      err_count_q <= err_count_q + CntW'(push) - CntW'(pop);
    end
  end

  sluice_fifo #(.Width(64), .Depth(ErrDepth)) u_err_fifo (
    .clk_i,
    .rst_ni,
    .in_valid_i (err_valid_i),
    .in_ready_o (err_ready_o),
    .in_data_i  (err_data_i),
    .out_valid_o(err_valid),
    .out_ready_i(pop),
    .out_data_o (err_head)
  );

  assign dense_int_o = ctrl_q[0];
  assign seed_o      = ctrl_q[1];
  assign mode_o      = mode_q;
  assign vocab_en_o    = vocab_en_q;
  assign vocab_clear_o = vocab_clear_q;
  assign vocab_base_o  = vocab_base_q;
  assign vocab_tbits_o = vocab_tbits_q;
  assign mod_n_o     = mod_n_q;
  assign mod_magic_o = mod_magic_q;

endmodule
