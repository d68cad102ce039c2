// First-seen vocabulary ids, one table per column behind an AXI4 memory port (HBM on the card).
// Rows arrive in order, so numbering values in order of first appearance is a lookup-or-insert per
// value: column c's table is an open-addressing hash table of 2^tbits 16-byte entries at
// base + ((c << tbits) + slot) * 16, entry = {valid @96, count[95:64], id[63:32], value[31:0]}.
// A hit increments the count and gives the stored id; an empty slot takes the column's next id.
// The tables must be zero when a run starts (the host clears them) and clear_i resets the next ids.
//
// This unit is serial (one memory access in flight, one value after the other): it is the
// semantics and the memory interface, not the throughput design (which would keep the in-flight
// values of each column in a small associative buffer so that lookups can overlap).
// With enable_i low rows pass straight through.
module sluice_vocab (
  input  logic                clk_i,
  input  logic                rst_ni,
  input  logic                enable_i,
  input  logic                clear_i,
  input  logic [63:0]         base_i,
  input  logic [4:0]          tbits_i,      // 1 .. 24
  output logic                full_o,       // a value found its column's table full (sticky)
  input  logic                in_valid_i,
  output logic                in_ready_o,
  input  sluice_pkg::xrow_t   in_row_i,
  output logic                out_valid_o,
  input  logic                out_ready_i,
  output sluice_pkg::xrow_t   out_row_o,
  // AXI4 master, single 16-byte beats
  output logic                m_arvalid_o,
  input  logic                m_arready_i,
  output logic [63:0]         m_araddr_o,
  input  logic                m_rvalid_i,
  output logic                m_rready_o,
  input  logic [127:0]        m_rdata_i,
  output logic                m_awvalid_o,
  input  logic                m_awready_i,
  output logic [63:0]         m_awaddr_o,
  output logic                m_wvalid_o,
  input  logic                m_wready_i,
  output logic [127:0]        m_wdata_o,
  input  logic                m_bvalid_i,
  output logic                m_bready_o
);

  typedef enum logic [2:0] {Idle, RdReq, RdWait, WrReq, WrWait, Out} state_e;

  state_e                        state_q;
  sluice_pkg::xrow_t             row_q;
  logic [4:0]                    col_q;
  logic [23:0]                   slot_q;
  logic [127:0]                  entry_q;
  logic                          aw_done_q, w_done_q;
  logic [sluice_pkg::NumSparse-1:0][31:0] next_id_q;
  logic [24:0]                   probes_q;
  logic                          full_q;

  logic [31:0] value;
  logic [23:0] mask;
  logic [47:0] index;

  assign value  = row_q.words[32*(1 + sluice_pkg::NumDense + 32'(col_q)) +: 32];
  assign mask   = 24'((32'd1 << tbits_i) - 32'd1);
  assign index  = ({43'd0, col_q} << tbits_i) | {24'd0, slot_q};

  assign m_araddr_o  = base_i + {12'd0, index, 4'd0};
  assign m_awaddr_o  = m_araddr_o;
  assign m_arvalid_o = state_q == RdReq;
  assign m_rready_o  = state_q == RdWait;
  assign m_awvalid_o = state_q == WrReq && !aw_done_q;
  assign m_wvalid_o  = state_q == WrReq && !w_done_q;
  assign m_wdata_o   = entry_q;
  assign m_bready_o  = state_q == WrWait;

  // Pass-through when disabled.
  assign in_ready_o  = enable_i ? state_q == Idle : out_ready_i;
  assign out_valid_o = enable_i ? state_q == Out : in_valid_i;
  assign out_row_o   = enable_i ? row_q : in_row_i;

  logic hit, empty;
  assign hit   = m_rdata_i[96] && m_rdata_i[31:0] == value;
  assign empty = !m_rdata_i[96];

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      state_q   <= Idle;
      row_q     <= '0;
      col_q     <= '0;
      slot_q    <= '0;
      entry_q   <= '0;
      aw_done_q <= 1'b0;
      w_done_q  <= 1'b0;
      next_id_q <= '0;
      probes_q  <= '0;
      full_q    <= 1'b0;
    end else begin
      if (clear_i) begin
        next_id_q <= '0;
        full_q    <= 1'b0;
      end
      unique case (state_q)
        Idle: begin
          if (enable_i && in_valid_i) begin
            row_q <= in_row_i;
            col_q <= '0;
            if (in_row_i.eot || in_row_i.err != sluice_pkg::ErrOk) begin
              state_q <= Out;
            end else begin
              state_q <= RdReq;
              slot_q  <= 24'(in_row_i.words[32*(1 + sluice_pkg::NumDense) +: 32] * 32'h9e3779b1
                             >> (6'd32 - {1'b0, tbits_i}));
            end
          end
        end
        RdReq: if (m_arready_i) state_q <= RdWait;
        RdWait: begin
          if (m_rvalid_i) begin
            if (hit || empty) begin
              entry_q[31:0]   <= value;
              entry_q[63:32]  <= hit ? m_rdata_i[63:32] : next_id_q[col_q];
              entry_q[95:64]  <= hit ? m_rdata_i[95:64] + 32'd1 : 32'd1;
              entry_q[127:96] <= 32'd1;
              row_q.words[32*(1 + sluice_pkg::NumDense + 32'(col_q)) +: 32] <=
                  hit ? m_rdata_i[63:32] : next_id_q[col_q];
              if (empty) next_id_q[col_q] <= next_id_q[col_q] + 32'd1;
              aw_done_q <= 1'b0;
              w_done_q  <= 1'b0;
              state_q   <= WrReq;
            end else if (probes_q == {1'b0, mask}) begin
              // Every slot taken: the value gets no id (all ones) and the host is told.
              full_q  <= 1'b1;
              row_q.words[32*(1 + sluice_pkg::NumDense + 32'(col_q)) +: 32] <= '1;
              entry_q   <= m_rdata_i;  // write back what was there
              aw_done_q <= 1'b0;
              w_done_q  <= 1'b0;
              state_q   <= WrReq;
            end else begin
              slot_q   <= (slot_q + 24'd1) & mask;  // linear probing
              probes_q <= probes_q + 25'd1;
              state_q  <= RdReq;
            end
          end
        end
        WrReq: begin
          if (m_awready_i) aw_done_q <= 1'b1;
          if (m_wready_i) w_done_q <= 1'b1;
          if ((aw_done_q || m_awready_i) && (w_done_q || m_wready_i)) state_q <= WrWait;
        end
        WrWait: begin
          if (m_bvalid_i) begin
            probes_q <= '0;
            if (col_q == 5'(sluice_pkg::NumSparse - 1)) begin
              state_q <= Out;
            end else begin
              col_q   <= col_q + 5'd1;
              slot_q  <= 24'(row_q.words[32*(2 + sluice_pkg::NumDense + 32'(col_q)) +: 32] * 32'h9e3779b1
                             >> (6'd32 - {1'b0, tbits_i}));
              state_q <= RdReq;
            end
          end
        end
        Out: if (out_ready_i) state_q <= Idle;
        default: state_q <= Idle;
      endcase
    end
  end

  logic unused_rdata;
  assign unused_rdata = ^m_rdata_i[127:97];
  assign full_o       = full_q;

endmodule
