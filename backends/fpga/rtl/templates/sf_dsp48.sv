{{HEADER}}
// sf_dsp48: one DSP48E2-like slice, AREG=BREG=MREG=PREG=1 (AMD UG579).
//   Parameters: CASCADE_IN 1 adds the cascade input (OPMODE Z = PCIN), 0 adds nothing (Z = 0).
//   Ports: clk; en (advance the pipeline); a, d [26:0] pre-adder inputs (AD = A + D);
//   b [17:0] multiplier input; pcin [47:0] cascade in (from the previous slice's pcout);
//   p [47:0] = P register; pcout [47:0] = P on the dedicated cascade route to the next slice.
//   Contract: three cycles after (a, d, b) are sampled with en, p = (a + d) * b (+ pcin with
//   CASCADE_IN), where pcin is the value present two enabled cycles after the inputs (the M
//   stage). Behavioural model for simulation; the vendor primitive, with its PCIN/PCOUT
//   cascade ports, is used only under SYNTHESIS.
module sf_dsp48 #(
    parameter int CASCADE_IN = 1
) (
    input  logic               clk,
    input  logic               en,
    input  logic signed [26:0] a,
    input  logic signed [26:0] d,
    input  logic signed [17:0] b,
    input  logic signed [47:0] pcin,
    output logic signed [47:0] p,
    output logic signed [47:0] pcout
);
`ifdef SYNTHESIS
  // OPMODE: W = 0, Z = PCIN (or 0), Y = M, X = M (UG579 table 2-7 and 2-9).
  localparam logic [8:0] OPMODE = CASCADE_IN != 0 ? 9'b000010101 : 9'b000000101;
  DSP48E2 #(
      .AMULTSEL("AD"), .USE_MULT("MULTIPLY"), .AREG(1), .BREG(1), .DREG(1), .ADREG(0),
      .MREG(1), .PREG(1), .CREG(0), .INMODEREG(0), .OPMODEREG(0), .ALUMODEREG(0)
  ) u_dsp (
      .CLK(clk), .CEA2(en), .CEB2(en), .CED(en), .CEM(en), .CEP(en),
      .A({{3{a[26]}}, a}), .D(d), .B(b), .PCIN(pcin), .P(p), .PCOUT(pcout),
      .INMODE(5'b00100), .OPMODE(OPMODE), .ALUMODE(4'b0000)
  );
`else
  logic signed [26:0] ad_q;
  logic signed [17:0] b_q;
  logic signed [44:0] m_q;

  always_ff @(posedge clk) begin
    if (en) begin
      ad_q <= a + d;
      b_q  <= b;
      m_q  <= ad_q * b_q;
      p    <= 48'(m_q) + (CASCADE_IN != 0 ? pcin : 48'sd0);
    end
  end
  assign pcout = p;
`endif
endmodule
