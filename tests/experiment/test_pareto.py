"""plot_comparison.py --pareto: one point per setting (mean and std over seeds), train.py runs and prune.py results
in one figure, the dense model as a reference line."""

import csv
import json

import numpy as np
import pytest

from experiment import compare, pareto


def _train_run(root, method, seed, accuracy, sparsity, macs=None, status="completed", **config):
    folder = root / f"results_{method}_sst2"
    folder.mkdir(exist_ok=True)
    stamp = f"20260101_000000_{len(list(folder.glob('*.json'))):06d}"
    final = {"epoch": 2, "dev_accuracy": accuracy, "global_sparsity": sparsity, **({"macs_kept": macs} if macs else {})}
    csv_path = folder / f"results_{method}_{stamp}.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(final))
        writer.writeheader()
        writer.writerow(final)
    meta = {"method": method, "timestamp": stamp, "status": status, "primary_metric": "dev_accuracy", "final": final,
            "best": final, "config": {"seed": seed, **config}, "model": {"parameters": 10, "prunable_weights": 5},
            "timings": {"train_wall_seconds": 1.0}, "paths": {"csv": str(csv_path)}}
    (folder / f"metadata_{method}_{stamp}.json").write_text(json.dumps(meta))


def _prune_result(root, name, method, constraint, seed, accuracy, kept, dense):
    folder = root / "pruned" / name
    folder.mkdir(parents=True)
    metrics = {"method": method, "task": "sst2", "constraint": constraint, "primary_metric": "dev_accuracy",
               "final": "bias_correction", "dev": {"dense": {"dev_accuracy": dense},
                                                   "bias_correction": {"dev_accuracy": accuracy}},
               "macs": {"kept_fraction": kept}, "args": {"seed": seed}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def results(tmp_path):
    both = {"pruning_granularity": "both", "end_sparsity": 0.5}
    _train_run(tmp_path, "baseline", 0, 0.90, 0.0)
    _train_run(tmp_path, "baseline", 1, 0.92, 0.0)
    _train_run(tmp_path, "magnitude", 0, 0.80, 0.40, 0.50, **both)
    _train_run(tmp_path, "magnitude", 1, 0.84, 0.42, 0.48, **both)
    _train_run(tmp_path, "magnitude", 0, 0.86, 0.41, 0.49, teacher="/t", **both)
    _train_run(tmp_path, "magnitude", 2, 0.10, 0.99, 0.01, status="running", **both)  # not finished: left out
    (tmp_path / "nested").mkdir()
    _train_run(tmp_path / "nested", "movement", 0, 0.70, 0.90, end_sparsity=0.9)  # a run in its own folder
    _prune_result(tmp_path, "a", "fisher", 0.5, 0, 0.85, 0.50, 0.91)
    _prune_result(tmp_path, "b", "fisher", 0.5, 1, 0.87, 0.49, 0.91)
    _prune_result(tmp_path, "c", "kprune", 0.4, 0, 0.83, 0.40, 0.91)
    return tmp_path


def test_points_group_seeds_and_read_both_sources(results):
    points = pareto.train_points(results, "sst2") + pareto.prune_points(results, "sst2")
    rows = {(row["label"], row["setting"]): row for row in pareto.group_points(points)}
    assert set(rows) == {("baseline", None), ("magnitude (both)", 0.5), ("magnitude (both) + KD", 0.5),
                         ("movement", 0.9), ("fisher", 0.5), ("kprune", 0.4)}
    mag = rows[("magnitude (both)", 0.5)]
    assert (mag["runs"], mag["seeds"]) == (2, "0 1")
    assert mag["metric_mean"] == pytest.approx(0.82) and mag["metric_std"] == pytest.approx(np.std([0.8, 0.84], ddof=1))
    assert mag["sparsity_mean"] == pytest.approx(0.41) and mag["macs_kept_mean"] == pytest.approx(0.49)
    fisher = rows[("fisher", 0.5)]
    assert fisher["metric_mean"] == pytest.approx(0.86) and fisher["sparsity_mean"] is None
    assert rows[("movement", 0.9)]["macs_kept_mean"] is None and rows[("movement", 0.9)]["metric_std"] == 0.0
    assert pareto.dense_reference(points) == pytest.approx(0.91)  # the baseline runs' mean


def test_the_figure_draws_the_runs_final_metrics(results):
    points = pareto.train_points(results, "sst2") + pareto.prune_points(results, "sst2")
    fig = pareto.pareto_figure(pareto.group_points(points), pareto.dense_reference(points), "accuracy")
    by_sparsity, by_macs = fig.axes[:2]

    def drawn(axis):
        return {container.get_label(): (list(container.lines[0].get_xdata()), list(container.lines[0].get_ydata()))
                for container in axis.containers}

    # Read back from the fixtures' JSON, not from the grouping.
    assert drawn(by_sparsity) == {"magnitude (both)": ([pytest.approx(41.0)], [pytest.approx(0.82)]),
                                  "magnitude (both) + KD": ([pytest.approx(41.0)], [pytest.approx(0.86)]),
                                  "movement": ([pytest.approx(90.0)], [pytest.approx(0.70)])}
    assert drawn(by_macs) == {"fisher": ([pytest.approx(49.5)], [pytest.approx(0.86)]),
                              "kprune": ([pytest.approx(40.0)], [pytest.approx(0.83)]),
                              "magnitude (both)": ([pytest.approx(49.0)], [pytest.approx(0.82)]),
                              "magnitude (both) + KD": ([pytest.approx(49.0)], [pytest.approx(0.86)])}
    for axis in (by_sparsity, by_macs):
        (reference,) = [line for line in axis.lines if line.get_label().startswith("dense")]
        assert list(reference.get_ydata()) == [pytest.approx(0.91)] * 2
    markers = {c.get_label(): c.lines[0].get_marker() for c in by_macs.containers}
    assert len(set(markers.values())) == 3  # magnitude, fisher, kprune


def test_cli_writes_the_figure_and_its_points(results, capsys):
    assert compare.main(["--results_dir", str(results), "--pareto", "--formats", "png", "pdf",
                         "--output_dir", str(results / "figures")]) == 0
    assert (results / "figures" / "pareto_sst2.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "figures" / "pareto_sst2.pdf").read_bytes()[:4] == b"%PDF"
    rows = list(csv.DictReader((results / "figures" / "pareto_sst2.csv").open()))
    assert len(rows) == 6
    assert {row["label"]: float(row["metric_mean"]) for row in rows}["kprune"] == pytest.approx(0.83)
    # prune.py results alone still make a figure; nothing at all is an error.
    only = results / "only"
    _prune_result(only, "a", "fisher", 0.5, 0, 0.85, 0.50, 0.91)
    assert compare.main(["--results_dir", str(only), "--pareto"]) == 0
    assert (only / "pareto_sst2.png").exists()
    assert compare.main(["--results_dir", str(results / "none"), "--pareto"]) == 1
    assert "no prune.py metrics.json for sst2" in capsys.readouterr().err


def test_a_soft_movement_runs_setting_is_its_target_else_its_lambda(tmp_path):
    both = {"pruning_granularity": "both", "soft_movement_lambda": 10.0}
    _train_run(tmp_path, "soft_movement", 0, 0.85, 0.40, 0.50, target_sparsity=0.5, **both)
    _train_run(tmp_path, "soft_movement", 1, 0.87, 0.41, 0.49, target_sparsity=0.5, **both)
    _train_run(tmp_path, "soft_movement", 0, 0.80, 0.60, 0.30, target_sparsity=None, **both)
    rows = {row["setting"]: row for row in pareto.group_points(pareto.train_points(tmp_path, "sst2"))}
    assert set(rows) == {0.5, 10.0}
    assert rows[0.5]["runs"] == 2 and rows[0.5]["metric_mean"] == pytest.approx(0.86)
    assert rows[10.0]["macs_kept_mean"] == pytest.approx(0.30)
