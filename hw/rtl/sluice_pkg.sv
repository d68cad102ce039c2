// Shared constants and types of the sluice preprocessing core.
//
// Rows are Criteo TSV lines: label, 13 decimal ints, 26 hex ids, tab-separated. The core turns each
// into a packed row of 40 little-endian 32-bit words (label, 13 dense values, 26 ids) or, for a
// malformed line, an error record carrying the line's index and one of the reasons below (the
// numbering is sluice::RowError's).
package sluice_pkg;

  localparam int unsigned NumDense  = 13;
  localparam int unsigned NumSparse = 26;
  localparam int unsigned NumFields = 1 + NumDense + NumSparse;  // 40
  localparam int unsigned BeatBytes = 64;                          // 512-bit streams
  localparam int unsigned RowBits   = NumFields * 32;              // 1280: a packed output row
  localparam int unsigned RowNoW    = 40;                          // line index within a transfer

  // Reasons, as sluice::RowError.
  typedef enum logic [3:0] {
    ErrOk          = 4'd0,
    ErrEmptyLine   = 4'd1,
    ErrNulByte     = 4'd2,
    ErrFieldCount  = 4'd3,
    ErrBadLabel    = 4'd4,
    ErrBadInt      = 4'd5,
    ErrIntOverflow = 4'd6,
    ErrBadHex      = 4'd7,
    ErrHexTooLong  = 4'd8
  } row_err_e;

  // Field index of a line-level error (empty line, NUL byte, field count).
  localparam logic [5:0] FieldNone = 6'h3f;

  // One segment of a beat handed to a lane: bytes [start, stop) of the beat belong to the lane's
  // current line; row_end: the line ends there (its '\n' or the end of the transfer); eot: no
  // bytes, marks the end of the transfer (the lane forwards it in line order).
  typedef struct packed {
    logic [BeatBytes*8-1:0] data;
    logic [6:0]             start;
    logic [6:0]             stop;
    logic                   row_end;
    logic                   eot;
  } seg_t;
  localparam int unsigned SegBits = BeatBytes * 8 + 7 + 7 + 1 + 1;  // $bits(seg_t)

  // A parsed line, before the transforms.
  typedef struct packed {
    logic                          eot;
    row_err_e                      err;
    logic [5:0]                    field;
    logic                          label;
    logic [NumDense-1:0][63:0]     ints;
    logic [NumSparse-1:0][31:0]    cats;
  } prow_t;
  localparam int unsigned ProwBits = 1 + 4 + 6 + 1 + NumDense * 64 + NumSparse * 32;  // $bits(prow_t)

  // A line after the transforms: the packed row's words, and what the packer needs.
  typedef struct packed {
    logic                          eot;
    row_err_e                      err;
    logic [5:0]                    field;
    logic [RowNoW-1:0]             row_no;
    logic [RowBits-1:0]            words;
  } xrow_t;

  // Error record on the error stream: line index, reason, field (FieldNone for line-level).
  typedef struct packed {
    logic [13:0]       pad;
    logic [5:0]        field;
    row_err_e          err;
    logic [RowNoW-1:0] row_no;
  } err_rec_t;

endpackage
