"""Fisher vs K-prune on the tiny SST-2 model at MAC constraints 0.7, 0.5 and 0.3, through prune.py.

Every method prunes the same checkpoint with its defaults: Fisher (2,048
sampled rows; search, rearrange, rescale), K-prune (rows holding 100,000
tokens; measurement and search, sublayer by sublayer) and K-prune with
`--sublayerwise_tuning` (plus least-squares weight tuning). Prints, per
constraint, each one's dev accuracy, kept heads / neurons / MACs and wall
times (pruning alone, and the whole prune.py run with its dev scoring), then
the targets for both K-prune variants: no worse than Fisher at 0.5, and
better at 0.3.

    python bench/kprune_vs_fisher.py [CHECKPOINT_DIR]   # without one, trains the tiny model first (~4 min)
"""

import sys
import tempfile
import time

from common import prune_metrics, sst2_checkpoint

CONSTRAINTS = (0.7, 0.5, 0.3)
METHODS = {"fisher": (), "kprune": ("--method", "kprune"),
           "kprune+tuning": ("--method", "kprune", "--sublayerwise_tuning")}


def main():
    checkpoint = sst2_checkpoint(sys.argv)
    accuracy = {}
    for constraint in CONSTRAINTS:
        print(f"constraint {constraint} (MACs kept; removed {1 - constraint:.1f}):")
        for method, flags in METHODS.items():
            out = tempfile.mkdtemp(prefix=f"bench_{method}_{constraint}_")
            start = time.perf_counter()
            metrics = prune_metrics(checkpoint, out, "--constraint", str(constraint), *flags)
            wall = time.perf_counter() - start
            final = metrics["dev"][metrics["final"]]["dev_accuracy"]
            accuracy[method, constraint] = final
            kept, seconds = metrics["kept"], metrics["seconds"]
            if method.startswith("kprune"):
                parts = metrics["kprune"]["seconds"]
                detail = f"measure {parts['measure']:.1f}, search {parts['search']:.2f}, tuning {parts['tuning']:.1f}"
            else:
                detail = (f"fisher {seconds['fisher']:.1f}, search+rearrange "
                          f"{seconds['search'] + seconds['rearrange']:.2f}, rescale {seconds['rescale']:.1f}")
            print(f"  {method:13s} dev accuracy {final:.4f} (dense {metrics['dev']['dense']['dev_accuracy']:.4f}); "
                  f"heads {kept['heads']}/8 {kept['heads_per_layer']}, neurons {kept['neurons']}/1024 "
                  f"{kept['neurons_per_layer']}, MACs kept {metrics['macs']['kept_fraction']:.3f}")
            print(f"{'':16s}pruning {seconds['pruning']:.1f} s ({detail}); prune.py wall {wall:.1f} s")
            if method == "kprune+tuning":
                print(f"{'':16s}tuning mse: " + "; ".join(
                    f"L{s['layer']} {s['kind']} {s['tuning']['mse_before']:.4g}->{s['tuning']['mse_after']:.4g}"
                    for s in metrics["kprune"]["steps"] if "tuning" in s))
    targets = ((0.5, "no worse than", lambda k, f: k >= f), (0.3, "better than", lambda k, f: k > f))
    for method in ("kprune", "kprune+tuning"):
        for constraint, wanted, holds in targets:
            k, f = accuracy[method, constraint], accuracy["fisher", constraint]
            print(f"at {constraint}: {method} {k:.4f} vs fisher {f:.4f} ({100 * (k - f):+.2f} points; target "
                  f"{wanted} fisher: {'PASS' if holds(k, f) else 'FAIL'})")


if __name__ == "__main__":
    main()
