// value % n for a 32-bit value and a runtime n (Lemire's fastmod, exact for every 32-bit value and
// every n in 1 .. 2^32 - 1): low = magic * value mod 2^64, result = (low * n) >> 64, where
// magic = floor((2^64 - 1) / n) + 1 is supplied with n. n = 0 or n >= 2^32 leaves the value as is.
module sluice_mod32 (
  input  logic [31:0] value_i,
  input  logic [63:0] n_i,
  input  logic [63:0] magic_i,
  output logic [31:0] value_o
);

  logic [63:0]  low;
  logic [95:0]  prod;
  logic         bypass;
  logic         unused_prod;

  assign bypass  = (n_i == '0) | (n_i[63:32] != '0);
  assign low     = magic_i * {32'd0, value_i};
  assign prod    = {32'd0, low} * {64'd0, n_i[31:0]};
  assign value_o     = bypass ? value_i : prod[95:64];
  assign unused_prod = ^prod[63:0];

endmodule
