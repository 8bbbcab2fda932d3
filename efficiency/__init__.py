"""What a (pruned) encoder costs: MAC counts and a latency model fitted to measured lookup tables."""

from efficiency.mac import count_macs, head_macs, mac_shape, macs_kept, neuron_macs, unit_macs

__all__ = ["count_macs", "head_macs", "mac_shape", "macs_kept", "neuron_macs", "unit_macs"]
