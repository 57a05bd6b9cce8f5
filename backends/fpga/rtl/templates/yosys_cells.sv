// yosys_cells.sv: interface of the AMD DSP48E2 primitive (UG579) as far as sf_dsp48 uses it,
// so that Yosys's SystemVerilog front end (read_slang) can elaborate the instance under
// SYNTHESIS. Yosys's own cell library supplies the real definition during synth_xilinx.
// Read by backends/fpga/rtl/synth.py only; never simulated.
(* blackbox *)
module DSP48E2 #(
    parameter AMULTSEL = "A",
    parameter USE_MULT = "MULTIPLY",
    parameter integer AREG = 1,
    parameter integer BREG = 1,
    parameter integer DREG = 1,
    parameter integer ADREG = 1,
    parameter integer MREG = 1,
    parameter integer PREG = 1,
    parameter integer CREG = 1,
    parameter integer INMODEREG = 1,
    parameter integer OPMODEREG = 1,
    parameter integer ALUMODEREG = 1
) (
    input CLK,
    input CEA2,
    input CEB2,
    input CED,
    input CEM,
    input CEP,
    input [29:0] A,
    input [26:0] D,
    input [17:0] B,
    input [47:0] PCIN,
    output [47:0] P,
    output [47:0] PCOUT,
    input [4:0] INMODE,
    input [8:0] OPMODE,
    input [3:0] ALUMODE
);
endmodule
