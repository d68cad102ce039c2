// Collects the lanes' rows in line order (lane 0, 1, ..., NumLanes-1, 0, ...) and numbers them
// within the transfer. The end marker ends the transfer: numbering restarts at lane 0, line 0.
module sluice_row_merge
#(
  parameter int unsigned NumLanes = 16
) (
  input  logic                            clk_i,
  input  logic                            rst_ni,
  input  logic              [NumLanes-1:0] row_valid_i,
  output logic              [NumLanes-1:0] row_ready_o,
  input  logic [NumLanes-1:0][sluice_pkg::ProwBits-1:0] row_i,  // lane l's prow_t
  output logic                            out_valid_o,
  input  logic                            out_ready_i,
  output sluice_pkg::prow_t               out_row_o,
  output logic [sluice_pkg::RowNoW-1:0]   out_row_no_o
);

  localparam int unsigned LaneW = $clog2(NumLanes);

  logic [LaneW-1:0]  lane_q;
  logic [sluice_pkg::RowNoW-1:0] row_no_q;
  logic              take;

  assign out_valid_o  = row_valid_i[lane_q];
  assign out_row_o    = sluice_pkg::prow_t'(row_i[lane_q]);
  assign out_row_no_o = row_no_q;
  assign take         = out_valid_o & out_ready_i;

  always_comb begin
    row_ready_o         = '0;
    row_ready_o[lane_q] = out_ready_i;
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      lane_q   <= '0;
      row_no_q <= '0;
    end else if (take) begin
      if (out_row_o.eot) begin
        lane_q   <= '0;
        row_no_q <= '0;
      end else begin
        lane_q   <= lane_q + 1'b1;
        row_no_q <= row_no_q + 1'b1;
      end
    end
  end

endmodule
