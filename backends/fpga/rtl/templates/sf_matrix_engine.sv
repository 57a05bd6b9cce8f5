{{HEADER}}
// sf_matrix_engine: N_CHAINS sparse DSP chains in lock step with their on-chip buffers.
//   Parameters: N_CHAINS, CHAIN_LEN, MIN_N, WBITS as sf_dsp_chain; *_DEPTH buffer words.
//   Ports: clk, rst;
//     start (pulse while idle) with the MM/MV fields n_code, k_steps, row_tiles, tok_pairs,
//     act_base, w_base, bias_base, out_base, use_bias, accumulate, relu; busy; finish
//     (high in the last busy cycle);
//     act/w/bias write ports (*_we, *_waddr, *_wdata) that load the buffers while idle;
//     out_raddr -> out_rdata: reads the output buffer while idle (one cycle latency; the
//     engine uses the same RAM port while busy, so out_rdata is undefined then).
//     Writes beyond a buffer's depth are dropped; such reads return 0.
//   Memories carry the synthesis ram_style the generator chose (rtl/memories.py).
//   Buffer words (engine_model.EngineBuffers, bit-packed little end first):
//     act  = {lane 1, lane 0} x AW INT8; weight = {indices (4 bit), weights (WBITS)} per
//     chain c, slice j at position c*CHAIN_LEN+j; bias = int32 at c*SEGS+s;
//     out = int32 at (lane*N_CHAINS+c)*SEGS+s.
//   Contract: executes one MM/MV exactly as engine_model.execute_matrix and stays busy for
//   engine_model.matrix_cycles cycles: loops token pair / row tile / K step, one K step
//   per cycle, accumulates int32 with wrap-around, then adds bias and/or the previous
//   output, applies ReLU and writes the output word.
module sf_matrix_engine #(
    parameter int N_CHAINS = {{N_CHAINS}},
    parameter int CHAIN_LEN = {{CHAIN_LEN}},
    parameter int MIN_N = {{MIN_N}},
    parameter int WBITS = {{WBITS}},
    parameter int ACT_DEPTH = {{ACT_DEPTH}},
    parameter int W_DEPTH = {{W_DEPTH}},
    parameter int BIAS_DEPTH = {{BIAS_DEPTH}},
    parameter int OUT_DEPTH = {{OUT_DEPTH}},
    localparam int AW = CHAIN_LEN > 16 ? CHAIN_LEN : 16,
    localparam int SEGS = MIN_N == 16 ? 1 : CHAIN_LEN / MIN_N,
    localparam int ACT_BITS = 2 * AW * 8,
    localparam int W_BITS = N_CHAINS * CHAIN_LEN * (WBITS + 4),
    localparam int BIAS_BITS = N_CHAINS * SEGS * 32,
    localparam int OUT_BITS = 2 * BIAS_BITS
) (
    input  logic                 clk,
    input  logic                 rst,
    input  logic                 start,
    input  logic [1:0]           n_code,
    input  logic [15:0]          k_steps,
    input  logic [15:0]          row_tiles,
    input  logic [15:0]          tok_pairs,
    input  logic [15:0]          act_base,
    input  logic [15:0]          w_base,
    input  logic [15:0]          bias_base,
    input  logic [15:0]          out_base,
    input  logic                 use_bias,
    input  logic                 accumulate,
    input  logic                 relu,
    output logic                 busy,
    output logic                 finish,
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
  localparam int CW = CHAIN_LEN * WBITS;
  localparam int LATENCY = 5 + (CHAIN_LEN / 2 > 1 ? $clog2(CHAIN_LEN / 2) : 0);
  localparam int AA = ACT_DEPTH > 1 ? $clog2(ACT_DEPTH) : 1;  // buffer address bits
  localparam int WA = W_DEPTH > 1 ? $clog2(W_DEPTH) : 1;
  localparam int BA = BIAS_DEPTH > 1 ? $clog2(BIAS_DEPTH) : 1;
  localparam int OA = OUT_DEPTH > 1 ? $clog2(OUT_DEPTH) : 1;

  {{ACT_RAM_STYLE}}logic [ACT_BITS-1:0] act_mem[ACT_DEPTH];
  {{WEIGHT_RAM_STYLE}}logic [W_BITS-1:0] w_mem[W_DEPTH];
  {{BIAS_RAM_STYLE}}logic [BIAS_BITS-1:0] bias_mem[BIAS_DEPTH];
  {{OUT_RAM_STYLE}}logic [OUT_BITS-1:0] out_mem[OUT_DEPTH];

  // Latched instruction fields and the issue loop counters.
  logic [1:0] code_r;
  logic [15:0] ks_n, rt_n, tp_n, w_b, bias_b;
  logic bias_r, accum_r, relu_r, issuing;
  logic [15:0] ks, rt, tp, act_addr, w_addr, out_addr;
  logic last_issue;

  assign last_issue = ks == ks_n - 1 && rt == rt_n - 1 && tp == tp_n - 1;

  always_ff @(posedge clk) begin
    if (rst) begin
      busy <= 1'b0;
      issuing <= 1'b0;
    end else if (start && !busy) begin
      {code_r, ks_n, rt_n, tp_n} <= {n_code, k_steps, row_tiles, tok_pairs};
      {w_b, bias_b} <= {w_base, bias_base};
      {bias_r, accum_r, relu_r} <= {use_bias, accumulate, relu};
      {ks, rt, tp} <= '0;
      {act_addr, w_addr, out_addr} <= {act_base, w_base, out_base};
      busy <= 1'b1;
      issuing <= 1'b1;
    end else begin
      if (issuing) begin
        ks <= ks + 1;
        act_addr <= act_addr + 1;
        w_addr <= w_addr + 1;
        if (ks == ks_n - 1) begin
          ks <= '0;
          rt <= rt + 1;
          out_addr <= out_addr + 1;
          if (rt == rt_n - 1) begin
            rt <= '0;
            tp <= tp + 1;
            w_addr <= w_b;  // next token pair re-reads the same weights
          end else act_addr <= act_addr + 1 - ks_n;  // same tokens, next row tile
        end
        if (last_issue) issuing <= 1'b0;
      end
      if (finish) busy <= 1'b0;
    end
  end

  // Stage 1: synchronous buffer read; tags travel beside the data.
  logic [ACT_BITS-1:0] act_q;
  logic [W_BITS-1:0] w_q;
  logic rd_valid, rd_first, rd_last, rd_final;
  logic [15:0] rd_out, rd_rt;
  always_ff @(posedge clk) begin
    act_q <= act_mem[AA'(act_addr)];
    w_q <= w_mem[WA'(w_addr)];
    rd_first <= ks == 0;
    rd_last <= ks == ks_n - 1;
    rd_final <= last_issue;
    rd_out <= out_addr;
    rd_rt <= rt;
    if (rst) rd_valid <= 1'b0;
    else rd_valid <= issuing;
    if (act_we && 32'(act_waddr) < ACT_DEPTH) act_mem[AA'(act_waddr)] <= act_wdata;
    if (w_we && 32'(w_waddr) < W_DEPTH) w_mem[WA'(w_waddr)] <= w_wdata;
    if (bias_we && 32'(bias_waddr) < BIAS_DEPTH) bias_mem[BA'(bias_waddr)] <= bias_wdata;
  end

  logic [LATENCY-1:0] tag_first, tag_last, tag_final;
  logic [15:0] tag_out[LATENCY];
  logic [15:0] tag_rt[LATENCY];
  always_ff @(posedge clk) begin
    tag_first <= {tag_first[LATENCY-2:0], rd_first};
    tag_last <= {tag_last[LATENCY-2:0], rd_last};
    tag_final <= {tag_final[LATENCY-2:0], rd_final};
    tag_out[0] <= rd_out;
    tag_rt[0] <= rd_rt;
    for (int i = 1; i < LATENCY; i++) begin
      tag_out[i] <= tag_out[i-1];
      tag_rt[i] <= tag_rt[i-1];
    end
  end

  // The chains (never stalled: the accumulator always accepts).
  logic [N_CHAINS-1:0] ch_valid;
  logic [2*SEGS*32-1:0] ch_out[N_CHAINS];
  for (genvar c = 0; c < N_CHAINS; c++) begin : g_chain
    logic ready_unused;  // never stalled: out_ready is tied high
    sf_dsp_chain #(.CHAIN_LEN(CHAIN_LEN), .MIN_N(MIN_N), .WBITS(WBITS)) u_chain (
        .clk, .rst, .in_valid(rd_valid), .in_ready(ready_unused), .n_code(code_r),
        .w(w_q[c*CW+:CW]), .idx(w_q[N_CHAINS*CW+c*CHAIN_LEN*4+:CHAIN_LEN*4]),
        .act0(act_q[0+:AW*8]), .act1(act_q[AW*8+:AW*8]),
        .out_valid(ch_valid[c]), .out_ready(1'b1),
        .out0(ch_out[c][0+:SEGS*32]), .out1(ch_out[c][SEGS*32+:SEGS*32])
    );
  end

  // Accumulate: acc_next = (first ? 0 : acc) + chain output, int32 wrap-around.
  logic [OUT_BITS-1:0] acc, acc_next;
  logic res_valid, res_final, all_valid;
  logic [OUT_BITS-1:0] res;
  logic [15:0] res_out;
  always_comb begin
    for (int lane = 0; lane < 2; lane++)
      for (int c = 0; c < N_CHAINS; c++)
        for (int s = 0; s < SEGS; s++)
          acc_next[((lane*N_CHAINS+c)*SEGS+s)*32+:32] =
              (tag_first[LATENCY-1] ? 32'd0 : acc[((lane*N_CHAINS+c)*SEGS+s)*32+:32])
              + ch_out[c][(lane*SEGS+s)*32+:32];
  end

  // Finish: read bias and old output with the last K step, add, ReLU, write. The output
  // buffer has one read port: the engine's while busy, the out_raddr port's while idle.
  logic [BIAS_BITS-1:0] bias_q;
  logic [OUT_BITS-1:0] old_q, final_word;
  logic [OA-1:0] out_read_addr;
  assign out_read_addr = OA'(busy ? tag_out[LATENCY-1] : out_raddr);
  always_ff @(posedge clk) begin
    if (all_valid) acc <= acc_next;
    res_final <= tag_final[LATENCY-1];
    res <= acc_next;
    res_out <= tag_out[LATENCY-1];
    bias_q <= bias_mem[BA'(tag_rt[LATENCY-1] + bias_b)];
    old_q <= busy || 32'(out_raddr) < OUT_DEPTH ? out_mem[out_read_addr] : '0;
    if (rst) res_valid <= 1'b0;
    else res_valid <= all_valid && tag_last[LATENCY-1];
    if (res_valid && 32'(res_out) < OUT_DEPTH) out_mem[OA'(res_out)] <= final_word;
  end
  assign out_rdata = old_q;
  assign finish = res_valid && res_final;
  assign all_valid = &ch_valid;  // chains run in lock step

  always_comb begin
    for (int lane = 0; lane < 2; lane++)
      for (int i = 0; i < N_CHAINS * SEGS; i++) begin
        logic [31:0] v;
        // Gated operands rather than conditional adds: one LUT per bit and adder.
        v = res[(lane*N_CHAINS*SEGS+i)*32+:32] + (bias_r ? bias_q[i*32+:32] : 32'd0)
            + (accum_r ? old_q[(lane*N_CHAINS*SEGS+i)*32+:32] : 32'd0);
        if (relu_r && v[31]) v = '0;
        final_word[(lane*N_CHAINS*SEGS+i)*32+:32] = v;
      end
  end
endmodule
