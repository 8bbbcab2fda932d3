"""Encoder shapes by name: layers / d_model / heads / FFN width."""

PRESETS = {
    "tiny": {"num_layers": 2, "d_model": 256, "num_heads": 4, "dff": 512},
    "small": {"num_layers": 6, "d_model": 512, "num_heads": 8, "dff": 1024},
    "base": {"num_layers": 12, "d_model": 768, "num_heads": 12, "dff": 3072},
    "large": {"num_layers": 24, "d_model": 1024, "num_heads": 16, "dff": 4096},
}
