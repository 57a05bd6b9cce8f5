{{HEADER}}
// sf_controller: fetches instructions (isa.py encoding) from its instruction memory and
//   runs the matrix queue: MM/MV start the matrix engine and wait for it; SYS END halts;
//   LOAD, STORE, SFU and SYS BARRIER are fetched and retired (their units are outside this
//   block; with one queue the wait/release tokens are already satisfied in program order).
//   Parameters: IMEM_DEPTH words; WBITS, MIN_N, CHAIN_LEN of the engine it drives.
//   Ports: clk, rst; imem_we/imem_waddr/imem_wdata load the program while idle; run starts
//   at word 0; running (fetching or executing), halted (SYS END reached), error (unknown
//   opcode, or an MM/MV the engine cannot run: act silu/gelu, per-block N, wider weights,
//   unsupported N, reserved bits); engine command outputs and eng_finish input.
//   Contract (cycles): an instruction of L words takes L + 1 fetch cycles + 1 execute cycle,
//   plus the engine's busy cycles for MM/MV.
module sf_controller #(
    parameter int IMEM_DEPTH = {{IMEM_DEPTH}},
    parameter int WBITS = {{WBITS}},
    parameter int MIN_N = {{MIN_N}},
    parameter int CHAIN_LEN = {{CHAIN_LEN}}
) (
    input  logic        clk,
    input  logic        rst,
    input  logic        imem_we,
    input  logic [15:0] imem_waddr,
    input  logic [31:0] imem_wdata,
    input  logic        run,
    output logic        running,
    output logic        halted,
    output logic        error,
    output logic        start,
    output logic [1:0]  n_code,
    output logic [15:0] k_steps,
    output logic [15:0] row_tiles,
    output logic [15:0] tok_pairs,
    output logic [15:0] act_base,
    output logic [15:0] w_base,
    output logic [15:0] bias_base,
    output logic [15:0] out_base,
    output logic        use_bias,
    output logic        accumulate,
    output logic        relu,
    input  logic        eng_finish
);
  localparam int IA = IMEM_DEPTH > 1 ? $clog2(IMEM_DEPTH) : 1;
  localparam logic [3:0] OP_LOAD = 4'd1, OP_STORE = 4'd2, OP_MM = 4'd3, OP_MV = 4'd4,
                         OP_SFU = 4'd5, OP_SYS = 4'd6;
  // Bit c: mode code c (N = 2 << c, 3 = dense) runs on the chain (ChainParams.supports).
  localparam logic [3:0] MODE_OK = {1'b1,
      MIN_N <= 8 && CHAIN_LEN % 8 == 0, MIN_N <= 4 && CHAIN_LEN % 4 == 0, MIN_N <= 2};
  typedef enum logic [2:0] {IDLE, FETCH, EXEC, WAIT, HALT, ERR} state_t;

  state_t state;
  {{IMEM_RAM_STYLE}}logic [31:0] imem[IMEM_DEPTH];
  logic [31:0] rdata;
  logic [31:0] iw[5];  // words 0..4; longer instructions' tails are not needed here
  logic [15:0] pc;
  logic [2:0] f, len_r, cur_len, len_of_rdata;
  logic [3:0] opcode;
  logic is_matrix, bad_matrix;

  always_comb begin
    unique case (rdata[31:28])
      OP_LOAD: len_of_rdata = 3'd7;
      OP_STORE, OP_MM, OP_MV: len_of_rdata = 3'd5;
      OP_SFU: len_of_rdata = 3'd4;
      OP_SYS: len_of_rdata = 3'd1;
      default: len_of_rdata = 3'd0;  // unknown opcode
    endcase
  end
  assign cur_len = f == 3'd1 ? len_of_rdata : len_r;
  assign opcode = iw[0][31:28];
  assign is_matrix = opcode == OP_MM || opcode == OP_MV;
  // Reject what the engine cannot run (engine_model.check_matrix_op says the same).
  assign bad_matrix = iw[0][14] || iw[0][12] || iw[0][11:0] != '0
                      || (WBITS == 4 && !iw[0][17])
                      || !MODE_OK[iw[0][19:18]];

  always_ff @(posedge clk) begin
    rdata <= imem[IA'(pc + 16'(f))];
    if (imem_we && 32'(imem_waddr) < IMEM_DEPTH) imem[IA'(imem_waddr)] <= imem_wdata;
  end

  always_ff @(posedge clk) begin
    if (rst) begin
      state <= IDLE;
      pc <= '0;
      f <= '0;
    end else begin
      unique case (state)
        IDLE: if (run) {state, pc, f} <= {FETCH, 16'd0, 3'd0};
        FETCH: begin
          f <= f + 3'd1;
          if (f != 3'd0) begin
            if (f <= 3'd5) iw[f-3'd1] <= rdata;
            if (f == 3'd1) len_r <= len_of_rdata;
            if (cur_len == 3'd0) state <= ERR;
            else if (f == cur_len) state <= EXEC;
          end
        end
        EXEC: begin
          f <= '0;
          if (is_matrix) state <= bad_matrix ? ERR : WAIT;
          else if (opcode == OP_SYS && iw[0][19:16] == 4'd1) state <= HALT;
          else {state, pc} <= {FETCH, pc + 16'(len_r)};
        end
        WAIT: if (eng_finish) {state, pc} <= {FETCH, pc + 16'(len_r)};
        default: ;  // HALT and ERR stay until reset
      endcase
    end
  end

  assign running = state == FETCH || state == EXEC || state == WAIT;
  assign halted = state == HALT;
  assign error = state == ERR;
  assign start = state == EXEC && is_matrix && !bad_matrix;
  assign {n_code, use_bias, accumulate} = {iw[0][19:18], iw[0][16], iw[0][15]};
  assign relu = iw[0][13];
  assign {k_steps, row_tiles, tok_pairs, act_base} = {iw[1], iw[2]};
  assign {w_base, out_base} = iw[3];
  assign bias_base = iw[4][31:16];
  // Token masks (one queue here) and the per-block N table address (rejected) are unused.
  logic unused_fields;
  assign unused_fields = &{1'b0, iw[0][27:20], iw[4][15:0]};
endmodule
