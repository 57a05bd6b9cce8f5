"""HBM channel rates: the AXI ports of a channel, its bandwidth and access efficiency."""

from __future__ import annotations

import pytest

from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.simulator.fpga_costs import hbm_params


@pytest.mark.parametrize(
    ("name", "ports", "channel_bytes_per_s"), [("u280", 1, 14.375e9), ("vhk158", 2, 25.6e9)]
)
def test_a_channel_moves_at_most_its_ports_or_its_efficiency(name, ports, channel_bytes_per_s):
    hw = load_hw(name)
    params = hbm_params(hw)
    port = ports * 32 * 225e6  # 256-bit ports (PG276, PG313) at the accelerator clock
    assert params.port_bytes_per_s == pytest.approx(port)
    own = min(port, 0.7 * channel_bytes_per_s)
    channel = next(c for c in range(params.channels) if params.owner(c) == 0)
    assert params.solo_rate(0, channel) == pytest.approx(own)
    assert params.shared_rate(0, channel, 2) == pytest.approx(
        min(port, 0.7 * channel_bytes_per_s / 2)
    )


def test_the_vhk158_channels_stream_twice_as_fast_as_the_u280s():
    """Same clock and ports, but two NoC ports per channel and a faster channel (PG313)."""
    u280, vhk158 = hbm_params(load_hw("u280")), hbm_params(load_hw("vhk158"))
    assert vhk158.solo_rate(0, 0) == pytest.approx(2 * u280.solo_rate(0, 0))


def test_a_faster_port_clock_leaves_the_channel_efficiency_binding():
    hw = with_overrides(load_hw("u280"), {"hbm.port_clock_hz": 450e6})
    params = hbm_params(hw)
    assert params.solo_rate(0, 0) == pytest.approx(0.7 * 14.375e9)  # 14.4 GB/s port, 10.1 GB/s
