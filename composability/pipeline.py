"""The steps between files: prune every unit of a scheme, fine-tune them at module level, compose a
configuration's model from them and write it as a checkpoint that the other drivers load like any other."""

import csv
import datetime
import logging
import os

from composability.configs import ComposeError
from composability.module_tuning import UnitTrainer, block_activations, embed, module_examples
from composability.scheme import configuration, units_of
from composability.units import (
    index_units,
    load_unit,
    prune_unit,
    put_unit,
    read_index,
    save_unit,
    unit_file,
    write_index,
)
from gated import rebuilt_with
from gated_bert.files import atomic_path, staged_folder, write_json_atomic
from gated_bert.progress import Progress

log = logging.getLogger("compose")
STATS_COLUMNS = ("unit", "step", "train_loss", "heldout_loss", "seconds")
COMPOSED_JSON = "composed.json"


def blocks_of(model):
    """`{index: EncoderBlock}` of a gated encoder."""
    from gated.encoder import encoder_blocks

    return {int(layer.name.removeprefix("block_")): layer for layer in encoder_blocks(model)}


def check_layers(model, units):
    """`ComposeError` for a unit whose layer the model does not have."""
    blocks = blocks_of(model)
    missing = sorted({unit["layer"] for unit in units.values()} - set(blocks))
    if missing:
        raise ComposeError(f"the configurations prune block(s) {missing}, but the checkpoint has blocks 0 to "
                           f"{max(blocks)}; edit the configurations file (or give --layers within range) and "
                           "regenerate the scheme")
    return blocks


def prune_units(model, scheme, folder, checkpoint):
    """Write every unit of `scheme`, pruned from the dense `model`, into the new folder `folder` (staged: a
    failure leaves nothing); returns `{unit id: sha256}`."""
    units = units_of(scheme)
    blocks = check_layers(model, units)
    hashes = {}
    with staged_folder(folder) as staging, Progress(len(units), "prune units", unit="unit", logger=log) as progress:
        for uid, unit in units.items():
            hashes[uid] = save_unit(staging, unit, prune_unit(blocks[unit["layer"]], unit))
            progress.update()
        write_index(staging, scheme, checkpoint, units, hashes, tuned=False)
    return hashes


def tune_units(model, units_dir, checkpoint, out_dir, stats_path, train_rows, heldout_rows, recipe):
    """Fine-tune every unit in `units_dir` at module level (`composability.module_tuning`) on the dense `model`'s
    activations for `train_rows` and `heldout_rows` (`[(ids, types, mask)]` batches); write the tuned units to the
    new folder `out_dir` and one stats row per unit and interval to `stats_path`. Returns the stats rows."""
    index = read_index(units_dir, checkpoint=checkpoint)
    units = index_units(index)
    if not units:
        raise ComposeError(f"{units_dir} holds no units (every rate of the configurations is 0)")
    blocks = check_layers(model, units)
    masks = [mask for _, _, mask in train_rows], [mask for _, _, mask in heldout_rows]
    xs = embed(model, train_rows), embed(model, heldout_rows)
    stats, hashes = [], {}
    with staged_folder(out_dir) as staging, \
            Progress(len(units), "module fine-tuning", unit="unit", logger=log) as progress:
        for layer in range(max(unit["layer"] for unit in units.values()) + 1):
            acts = tuple([block_activations(blocks[layer], x, mask) for x, mask in zip(part, part_masks, strict=True)]
                         for part, part_masks in zip(xs, masks, strict=True))
            for uid, unit in units.items():
                if unit["layer"] != layer:
                    continue
                arrays = load_unit(units_dir, unit, index)
                trainer = UnitTrainer(blocks[layer], unit, arrays, recipe, unit_file(units_dir, uid))
                rows = trainer.train(module_examples(acts[0], masks[0], unit["module"]),
                                     module_examples(acts[1], masks[1], unit["module"]))
                stats += rows
                log.info("%s: loss %.4g -> %.4g (held out %.4g -> %.4g) in %.1f s", uid, rows[0]["train_loss"],
                         rows[-1]["train_loss"], rows[0]["heldout_loss"], rows[-1]["heldout_loss"], rows[-1]["seconds"])
                gates = {name: value for name, value in arrays.items() if name.endswith("_gate")}
                hashes[uid] = save_unit(staging, unit, trainer.arrays(gates))
                progress.update()
            xs = tuple([acts_["out"] for acts_ in part] for part in acts)
        write_index(staging, {"scheme_sha256": index["scheme_sha256"]}, index.get("checkpoint"), units, hashes,
                    tuned=True, recipe=vars(recipe),
                    rows={"train": int(sum(len(ids) for ids, _, _ in train_rows)),
                          "heldout": int(sum(len(ids) for ids, _, _ in heldout_rows))})
        write_stats(stats_path, stats)
    return stats


def write_stats(path, rows):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=STATS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def compose(dense, scheme, index, units_dir=None, checkpoint=None):
    """Configuration `index` of `scheme` as a model: a copy of the `dense` model with kernel masks, each module the
    scheme names filled by its unit, read from `units_dir` (checked to come from `checkpoint`), or pruned from
    `dense` when `units_dir` is None (the direct pruning a baseline starts from)."""
    units = units_of(scheme, index)
    configuration(scheme, index)
    blocks = check_layers(dense, units)
    model = rebuilt_with(dense, add_kernel_masks=True)
    target = blocks_of(model)
    folder_index = read_index(units_dir, scheme, checkpoint) if units_dir else None
    for uid, unit in units.items():
        if units_dir:
            arrays, source = load_unit(units_dir, unit, folder_index), unit_file(units_dir, uid)
        else:
            arrays, source = prune_unit(blocks[unit["layer"]], unit), f"unit {uid} pruned from the checkpoint"
        put_unit(target[unit["layer"]], unit, arrays, source)
    return model


def write_checkpoint(model, config, folder, provenance):
    """Write `model` as a train.py-style checkpoint folder (`config_composed_<time>.json` beside
    `best_composed_<time>.keras` and `last_...`, the same file) plus `composed.json` (`provenance`), staged."""
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
    with staged_folder(folder) as staging:
        config.save(os.path.join(staging, f"config_composed_{stamp}.json"))
        best = os.path.join(staging, f"best_composed_{stamp}.keras")
        model.save(best)
        os.link(best, os.path.join(staging, f"last_composed_{stamp}.keras"))
        write_json_atomic(os.path.join(staging, COMPOSED_JSON), provenance)
    return os.path.join(folder, f"best_composed_{stamp}.keras")

