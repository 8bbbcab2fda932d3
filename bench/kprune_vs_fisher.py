"""Fisher vs K-prune on the tiny SST-2 model at MAC constraints 0.7, 0.5 and 0.3, through prune.py (~20 min).

Every method prunes the same checkpoint with its defaults: Fisher (2,048
sampled rows; search, rearrange, rescale), K-prune (rows holding 100,000
tokens; measurement and search, sublayer by sublayer) and K-prune with
`--sublayerwise_tuning` (plus least-squares weight tuning). Each runs with
sample seeds 0, 1 and 2, since on 872 dev rows one example is 0.11 points
and the sample alone can move a method by more. Prints, per constraint and
method, each seed's dev accuracy, kept heads / neurons and pruning wall time
(dev scoring excluded), then the means and the targets for both K-prune
variants: no worse than Fisher at 0.5, and better at 0.3 (mean over seeds).

    python bench/kprune_vs_fisher.py [CHECKPOINT_DIR]   # without one, trains the tiny model first (~4 min)
"""

import statistics
import sys
import tempfile

from common import prune_metrics, sst2_checkpoint

CONSTRAINTS = (0.7, 0.5, 0.3)
SEEDS = (0, 1, 2)
METHODS = {"fisher": (), "kprune": ("--method", "kprune", "--sublayerwise_tuning", "false"),
           "kprune+tuning": ("--method", "kprune", "--sublayerwise_tuning")}


def _detail(method, metrics):
    """The parts of the pruning time, per method."""
    seconds = metrics["seconds"]
    if method == "fisher":
        return f"fisher {seconds['fisher']:.1f}, rescale {seconds['rescale']:.1f}"
    parts = metrics["kprune"]["seconds"]
    return f"measure {parts['measure']:.1f}, tuning {parts['tuning']:.1f}"


def main():
    checkpoint = sst2_checkpoint(sys.argv)
    accuracy = {}
    for constraint in CONSTRAINTS:
        print(f"constraint {constraint} (MACs kept; removed {1 - constraint:.1f}):")
        for method, flags in METHODS.items():
            runs = []
            for seed in SEEDS:
                out = tempfile.mkdtemp(prefix=f"bench_{method}_{constraint}_{seed}_")
                metrics = prune_metrics(checkpoint, out, "--constraint", str(constraint), "--seed", str(seed), *flags)
                runs.append(metrics)
                kept = metrics["kept"]
                print(f"  {method:13s} seed {seed}: dev accuracy {metrics['dev'][metrics['final']]['dev_accuracy']:.4f}"
                      f"; heads {kept['heads_per_layer']}, neurons {kept['neurons_per_layer']}, MACs kept "
                      f"{metrics['macs']['kept_fraction']:.3f}; pruning {metrics['seconds']['pruning']:.1f} s "
                      f"({_detail(method, metrics)})", flush=True)
            values = [m["dev"][m["final"]]["dev_accuracy"] for m in runs]
            accuracy[method, constraint] = statistics.mean(values)
            print(f"  {method:13s} mean dev accuracy {statistics.mean(values):.4f} (min {min(values):.4f}, max "
                  f"{max(values):.4f}; dense {runs[0]['dev']['dense']['dev_accuracy']:.4f}), mean pruning "
                  f"{statistics.mean(m['seconds']['pruning'] for m in runs):.1f} s")
    targets = ((0.5, "no worse than", lambda k, f: k >= f), (0.3, "better than", lambda k, f: k > f))
    for method in ("kprune", "kprune+tuning"):
        for constraint, wanted, holds in targets:
            k, f = accuracy[method, constraint], accuracy["fisher", constraint]
            print(f"at {constraint}, mean of {len(SEEDS)} seeds: {method} {k:.4f} vs fisher {f:.4f} "
                  f"({100 * (k - f):+.2f} points; target {wanted} fisher: {'PASS' if holds(k, f) else 'FAIL'})")


if __name__ == "__main__":
    main()
