"""The model card of an export folder: `card.json` (for tools) and `README.md` (for people), counted from the models.

Parameters are weights only (never masks or gates); MACs are the attention heads' and FFN neurons' at
`seq_len` tokens (`efficiency.mac`), of the compact model and of the source model with every unit kept.
"""

import os

import numpy as np

from gated_bert.files import write_json_atomic

CARD_JSON = "card.json"
CARD_FORMAT = "gated-bert export"
CARD_VERSION = 1
WEIGHT_SPARSITY_NOTE = ("weight-level (unstructured) sparsity: the zeros are stored and multiplied like any weight, "
                        "so these kernels run no faster and take no less space than dense ones")


def write_card(folder, source, compact, spec, results, about, seq_len):
    """Write `card.json` and `README.md` into `folder`; returns the card."""
    from gated import compact_shape, count_parameters

    heads, widths = compact_shape(compact)
    dense_heads, dense_widths = compact_shape(source)
    attention = compact.get_layer("block_0").attention
    d_model, head_dim = attention.d_model, attention.head_dim
    macs, dense_macs = _macs(heads, widths, d_model, head_dim, seq_len), \
        _macs(dense_heads, dense_widths, d_model, head_dim, seq_len)
    card = {
        "format": CARD_FORMAT, "version": CARD_VERSION, **about,
        "task": spec.name, "task_type": "regression" if spec.is_regression else "classification",
        "text_pairs": spec.is_pair,
        "labels": None if spec.is_regression else list(spec.label_names), "primary_metric": spec.primary_metric,
        "shape": {"layers": len(heads), "d_model": d_model, "head_dim": head_dim, "heads_per_layer": heads,
                  "ffn_width_per_layer": widths, "dense_heads_per_layer": dense_heads,
                  "dense_ffn_width_per_layer": dense_widths},
        "parameters": count_parameters(compact), "dense_parameters": count_parameters(source),
        "macs": {"seq_len": seq_len, "total": macs, "dense": dense_macs, "kept_fraction": macs / dense_macs},
        **_weight_sparsity(source, compact),
        "formats": results,
    }
    write_json_atomic(os.path.join(folder, CARD_JSON), card)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(card_markdown(card))
    return card


def _macs(heads, widths, d_model, head_dim, seq_len):
    from efficiency.mac import unit_macs

    costs = unit_macs(d_model, head_dim, seq_len)
    return sum(heads) * costs["head"] + sum(widths) * costs["neuron"]


def _weight_sparsity(source, compact):
    """`{"weight_sparsity": ...}` when the source had weight-level masks with zeros: the share of zero weights in
    the compact model's block kernels, and what that means for speed; else nothing."""
    from gated import GatedDense, collect_gated_layers

    masks = [layer.kernel_mask.numpy() for layer in collect_gated_layers(source).values()
             if layer.kernel_mask is not None]
    if not any(np.any(mask == 0) for mask in masks):
        return {}
    kernels = [layer.kernel.numpy() for layer in collect_gated_layers(compact, GatedDense).values()]
    zeros, total = sum(int(np.sum(k == 0)) for k in kernels), sum(k.size for k in kernels)
    return {"weight_sparsity": {"zeros": zeros, "weights": total, "fraction": zeros / total,
                                "note": WEIGHT_SPARSITY_NOTE}}


def card_markdown(card):
    """The card as a short Markdown page."""
    shape, macs = card["shape"], card["macs"]
    metric = f"dev_{card['primary_metric']}"
    lines = [
        f"# {card['task']} encoder (gated-bert export)", "",
        f"- source checkpoint: `{card.get('checkpoint', 'unknown')}`"
        + (f" (weights SHA-256 `{card['checkpoint_sha256']}`)" if card.get("checkpoint_sha256") else ""),
        f"- masks: `{card.get('masks_dir') or 'none (the checkpoint as trained)'}`"
        + (f"; method {card['method']}" if card.get("method") else "")
        + (f", constraint {card['constraint']}" if card.get("constraint") is not None else ""),
        f"- heads per layer: {shape['heads_per_layer']} (of {shape['dense_heads_per_layer']})",
        f"- FFN width per layer: {shape['ffn_width_per_layer']} (of {shape['dense_ffn_width_per_layer']})",
        f"- parameters: {card['parameters']:,} (dense {card['dense_parameters']:,})",
        f"- MACs at {macs['seq_len']} tokens: {macs['total']:,} ({100 * macs['kept_fraction']:.1f}% of dense)",
    ]
    if "weight_sparsity" in card:
        sparsity = card["weight_sparsity"]
        lines.append(f"- {100 * sparsity['fraction']:.1f}% of the block weights are zero; {sparsity['note']}")
    lines += ["", f"| format | file | size (MB) | {metric} | max abs logit diff | latency batch 1 (ms) | "
              "latency batch 32 (ms) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for fmt, result in card["formats"].items():
        latency = result.get("latency_ms", {})
        lines.append(f"| {fmt} | `{result['file']}` | {result['bytes'] / 1e6:.2f} | {result['dev'][metric]:.4f} | "
                     f"{result['max_abs_logit_diff']:.2g} | {_ms(latency.get('batch_1'))} | "
                     f"{_ms(latency.get('batch_32'))} |")
    lines += ["", f"Checked and timed on {card.get('dev_rows', '?')} dev rows and {macs['seq_len']}-token batches "
              f"when exported ({card.get('created', '')}); latency is the median of the timed runs on the exporting "
              "machine."]
    return "\n".join(lines) + "\n"


def _ms(value):
    return "-" if value is None else f"{value:.1f}"
