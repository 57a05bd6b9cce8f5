{{HEADER}}
// sf_dsp_chain: configurable sparse DSP chain (FlightLLM CSD-chain), two INT8 MACs per slice.
//   Parameters: CHAIN_LEN slices (groups of 2), MIN_N smallest N:16 mode (16 = dense only),
//   WBITS weight width (4 or 8).
//   Ports: clk, rst; in_valid/in_ready, n_code (0: 2:16, 1: 4:16, 2: 8:16, 3: dense),
//   w [CHAIN_LEN*WBITS] signed weights, idx [CHAIN_LEN*4] in-block indices,
//   act0/act1 [AW*8] INT8 activations of lanes 0 and 1; out_valid/out_ready,
//   out0/out1 [SEGS*32] int32 segment sums of lanes 0 and 1 (segment s in bits 32s+31:32s).
//   Contract: slice j multiplies act[j] (dense) or act[idx[j]] (sparse) by w[j] for both
//   lanes; dense mode sums all slices into segment 0, N:16 mode sums slices
//   [s*N, s*N+N) into segment s; unused segments read 0. Result appears LATENCY accepted
//   cycles later (engine_model.ChainParams.latency_cycles). Global stall: the pipeline
//   advances when out_ready is high or out_valid is low; in_ready mirrors that.
module sf_dsp_chain #(
    parameter int CHAIN_LEN = {{CHAIN_LEN}},
    parameter int MIN_N = {{MIN_N}},
    parameter int WBITS = {{WBITS}},
    localparam int GROUPS = CHAIN_LEN / 2,
    localparam int AW = CHAIN_LEN > 16 ? CHAIN_LEN : 16,
    localparam int SEGS = MIN_N == 16 ? 1 : CHAIN_LEN / MIN_N,
    localparam int LEVELS = GROUPS > 1 ? $clog2(GROUPS) : 0,
    localparam int LATENCY = 5 + LEVELS
) (
    input  logic                      clk,
    input  logic                      rst,
    input  logic                      in_valid,
    output logic                      in_ready,
    input  logic [1:0]                n_code,
    input  logic [CHAIN_LEN*WBITS-1:0] w,
    input  logic [CHAIN_LEN*4-1:0]    idx,
    input  logic [AW*8-1:0]           act0,
    input  logic [AW*8-1:0]           act1,
    output logic                      out_valid,
    input  logic                      out_ready,
    output logic [SEGS*32-1:0]        out0,
    output logic [SEGS*32-1:0]        out1
);
  localparam int SELW = $clog2(AW);
  logic adv;
  logic [LATENCY-1:0] valid_q;
  logic [1:0] code_q[LATENCY];  // mode travels with its data

  assign adv = out_ready | ~out_valid;
  assign in_ready = adv;
  assign out_valid = valid_q[LATENCY-1];

  always_ff @(posedge clk) begin
    if (rst) valid_q <= '0;
    else if (adv) valid_q <= {valid_q[LATENCY-2:0], in_valid};
  end
  always_ff @(posedge clk) begin
    if (adv) begin
      code_q[0] <= n_code;
      for (int i = 1; i < LATENCY; i++) code_q[i] <= code_q[i-1];
    end
  end

  // Sparse mux and WP486 packing: AD = (a1 << 18) + a0, B = weight.
  logic signed [26:0] pa[CHAIN_LEN];
  logic signed [26:0] pd[CHAIN_LEN];
  logic signed [17:0] pb[CHAIN_LEN];
  for (genvar j = 0; j < CHAIN_LEN; j++) begin : g_mux
    logic [SELW-1:0] sel;
    logic signed [7:0] a0, a1;
    // Two levels (a 16:1 mux by index, then the dense override) map to about 6 LUTs per bit;
    // one mux on a combined select maps to about 9.
    assign sel = SELW'(idx[j*4+:4]);
    assign a0 = n_code == 2'd3 ? act0[j*8+:8] : act0[sel*8+:8];
    assign a1 = n_code == 2'd3 ? act1[j*8+:8] : act1[sel*8+:8];
    assign pa[j] = {a1[7], a1, 18'd0};
    assign pd[j] = 27'(a0);
    assign pb[j] = 18'(signed'(w[j*WBITS+:WBITS]));
  end

  // Groups of two slices; the second waits one cycle so its PCIN lines up (cascade).
  logic signed [31:0] lvl[LEVELS+1][2][GROUPS];
  for (genvar g = 0; g < GROUPS; g++) begin : g_group
    logic signed [47:0] cascade, p1, p0_unused, pcout_unused;
    logic signed [26:0] a1_q, d1_q;
    logic signed [17:0] b1_q;
    always_ff @(posedge clk) begin
      if (adv) begin
        a1_q <= pa[2*g+1];
        d1_q <= pd[2*g+1];
        b1_q <= pb[2*g+1];
      end
    end
    sf_dsp48 #(.CASCADE_IN(0)) u_s0 (
        .clk, .en(adv), .a(pa[2*g]), .d(pd[2*g]), .b(pb[2*g]), .pcin(48'sd0), .p(p0_unused),
        .pcout(cascade)
    );
    sf_dsp48 #(.CASCADE_IN(1)) u_s1 (
        .clk, .en(adv), .a(a1_q), .d(d1_q), .b(b1_q), .pcin(cascade), .p(p1),
        .pcout(pcout_unused)
    );
    // Reduction node: split the lanes with the WP486 sign correction.
    always_ff @(posedge clk) begin
      if (adv) begin
        lvl[0][0][g] <= 32'(signed'(p1[17:0]));
        lvl[0][1][g] <= 32'(signed'(p1[47:18])) + 32'(p1[17]);
      end
    end
  end

  // Registered tree: level l joins heads 2^l apart while 2^l < the segment size.
  for (genvar l = 0; l < LEVELS; l++) begin : g_level
    logic joins;  // segments of 2 << code slices span 2^code groups; dense spans all
    if (l < 3) begin : g_sparse_join
      assign joins = code_q[4+l] == 2'd3 || code_q[4+l] > 2'(l);
    end else begin : g_dense_join
      assign joins = code_q[4+l] == 2'd3;
    end
    for (genvar g = 0; g < GROUPS; g++) begin : g_node
      always_ff @(posedge clk) begin
        if (adv) begin
          for (int lane = 0; lane < 2; lane++) begin
            if (g % (2 << l) == 0 && g + (1 << l) < GROUPS && joins)
              lvl[l+1][lane][g] <= lvl[l][lane][g] + lvl[l][lane][(g+(1<<l))%GROUPS];
            else lvl[l+1][lane][g] <= lvl[l][lane][g];
          end
        end
      end
    end
  end

  // Segment s of mode N starts at group s * N / 2; dense uses group 0 only.
  logic [1:0] out_code;
  assign out_code = code_q[LATENCY-1];
  for (genvar s = 0; s < SEGS; s++) begin : g_out
    int head;
    assign head = s << out_code;
    always_comb begin
      out0[s*32+:32] = '0;
      out1[s*32+:32] = '0;
      if ((out_code != 2'd3 || s == 0) && head < GROUPS) begin
        out0[s*32+:32] = lvl[LEVELS][0][head];
        out1[s*32+:32] = lvl[LEVELS][1][head];
      end
    end
  end
endmodule
