{{HEADER}}
// sf_accel_top: controller + matrix engine, the matrix-queue slice of the accelerator core.
//   Parameters: as sf_matrix_engine, plus IMEM_DEPTH of sf_controller.
//   Ports: clk, rst; program load (imem_*), buffer loads (act_*, w_*, bias_*) and the output
//   read port (out_raddr/out_rdata) of the engine; run, running, halted, error of the
//   controller; engine_busy (for per-instruction cycle measurement).
//   Contract: after run, executes the program's MM/MV instructions in order on the buffers;
//   bit-accurate to engine_model.execute_matrix.
module sf_accel_top #(
    parameter int N_CHAINS = {{N_CHAINS}},
    parameter int CHAIN_LEN = {{CHAIN_LEN}},
    parameter int MIN_N = {{MIN_N}},
    parameter int WBITS = {{WBITS}},
    parameter int ACT_DEPTH = {{ACT_DEPTH}},
    parameter int W_DEPTH = {{W_DEPTH}},
    parameter int BIAS_DEPTH = {{BIAS_DEPTH}},
    parameter int OUT_DEPTH = {{OUT_DEPTH}},
    parameter int IMEM_DEPTH = {{IMEM_DEPTH}},
    localparam int AW = CHAIN_LEN > 16 ? CHAIN_LEN : 16,
    localparam int SEGS = MIN_N == 16 ? 1 : CHAIN_LEN / MIN_N,
    localparam int ACT_BITS = 2 * AW * 8,
    localparam int W_BITS = N_CHAINS * CHAIN_LEN * (WBITS + 4),
    localparam int BIAS_BITS = N_CHAINS * SEGS * 32,
    localparam int OUT_BITS = 2 * BIAS_BITS
) (
    input  logic                 clk,
    input  logic                 rst,
    input  logic                 imem_we,
    input  logic [15:0]          imem_waddr,
    input  logic [31:0]          imem_wdata,
    input  logic                 run,
    output logic                 running,
    output logic                 halted,
    output logic                 error,
    output logic                 engine_busy,
    input  logic                 act_we,
    input  logic [15:0]          act_waddr,
    input  logic [ACT_BITS-1:0]  act_wdata,
    input  logic                 w_we,
    input  logic [15:0]          w_waddr,
    input  logic [W_BITS-1:0]    w_wdata,
    input  logic                 bias_we,
    input  logic [15:0]          bias_waddr,
    input  logic [BIAS_BITS-1:0] bias_wdata,
    input  logic [15:0]          out_raddr,
    output logic [OUT_BITS-1:0]  out_rdata
);
  logic start, use_bias, accumulate, relu, finish;
  logic [1:0] n_code;
  logic [15:0] k_steps, row_tiles, tok_pairs, act_base, w_base, bias_base, out_base;

  sf_controller #(
      .IMEM_DEPTH(IMEM_DEPTH), .WBITS(WBITS), .MIN_N(MIN_N), .CHAIN_LEN(CHAIN_LEN)
  ) u_ctrl (
      .clk, .rst, .imem_we, .imem_waddr, .imem_wdata, .run, .running, .halted, .error,
      .start, .n_code, .k_steps, .row_tiles, .tok_pairs, .act_base, .w_base, .bias_base,
      .out_base, .use_bias, .accumulate, .relu, .eng_finish(finish)
  );

  sf_matrix_engine #(
      .N_CHAINS(N_CHAINS), .CHAIN_LEN(CHAIN_LEN), .MIN_N(MIN_N), .WBITS(WBITS),
      .ACT_DEPTH(ACT_DEPTH), .W_DEPTH(W_DEPTH), .BIAS_DEPTH(BIAS_DEPTH), .OUT_DEPTH(OUT_DEPTH)
  ) u_engine (
      .clk, .rst, .start, .n_code, .k_steps, .row_tiles, .tok_pairs, .act_base, .w_base,
      .bias_base, .out_base, .use_bias, .accumulate, .relu, .busy(engine_busy), .finish,
      .act_we, .act_waddr, .act_wdata, .w_we, .w_waddr, .w_wdata, .bias_we, .bias_waddr,
      .bias_wdata, .out_raddr, .out_rdata
  );
endmodule
