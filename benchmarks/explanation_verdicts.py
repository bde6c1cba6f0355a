"""The registered comparisons of benchmarks/explanations/PROTOCOL.md, read from ``results.json`` files of
``python -m apinet evaluate-explanations``: one markdown row per comparison and file, under the tie rule
of amendment 6 (expected hit over tied maxima, sign-flip test) and, beside it, under the first-maximum
rule used before (McNemar's exact test).

    python benchmarks/explanation_verdicts.py runs/a6-olddemo-val/results.json runs/a6-olddemo-test/results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from apinet.metrics.statistics import format_p  # noqa: E402

#: (label, map A, map B): H1 and its chance condition, H2 (amendment 1), H5 and its chance condition.
REGISTERED = (
    ("H1: top gated channel vs baseline top channel", "apinet_top_gated_channel", "baseline_top_channel"),
    ("H1 chance: top gated channel vs random bird point", "apinet_top_gated_channel", "chance_bird_point"),
    ("H2: top g x act channel vs baseline top channel", "apinet_top_gate_x_act_channel", "baseline_top_channel"),
    ("H5: class contrast vs Grad-CAM (test path)", "apinet_class_contrast", "apinet_gradcam_test"),
    ("H5 chance: class contrast vs random bird point", "apinet_class_contrast", "chance_bird_point"),
)


def rows(path: Path, key: str = "tol") -> list[str]:
    res = json.loads(path.read_text())
    by_pair = {(c["a"], c["b"]): c for c in res["comparisons"]}
    out = []
    for label, a, b in REGISTERED:
        c = by_pair.get((a, b))
        if c is None:
            continue
        m = c[key]
        old = m.get("mcnemar_first")
        sa, sb = res["summary"][a], res["summary"][b]
        first = "pointing_first" if key == "tol" else "pointing_0px_first"
        old_cells = (f"{sa[first]:.3f} vs {sb[first]:.3f} | {old['a_only']} / {old['b_only']} | {old['p_value']:.2g}"
                     if old else "- | - | -")
        out.append(f"| {label} | {res['split']} | {m['rate_a']:.3f} vs {m['rate_b']:.3f} | {m['a_only']} / "
                   f"{m['b_only']} | {format_p(m)} | {old_cells} |")
    bird = res["summary"].get("chance_bird_point", {})
    if "pointing_expected" in bird:
        exp = bird["pointing_expected"] if key == "tol" else bird["pointing_0px_expected"]
        out.append(f"| (bird point, exact expected rate) | {res['split']} | {exp:.3f} | | | |")
    return out


def ties(path: Path) -> list[str]:
    res = json.loads(path.read_text())
    out = []
    for name in ("apinet_top_gated_channel", "baseline_top_channel", "apinet_top_gate_x_act_channel",
                 "apinet_top_activation_channel", "apinet_class_contrast", "apinet_gradcam_test", "random"):
        s = res["summary"].get(name)
        if s and "tied_share" in s:
            out.append(f"| {name} | {res['split']} | {s['pointing']:.3f} | {s['pointing_first']:.3f} | "
                       f"{s['pointing_any']:.3f} | {100 * s['tied_share']:.0f} % | {s['tied_median']:.0f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--tolerance", choices=("tol", "0px"), default="tol")
    args = parser.parse_args()
    print("| comparison | split | rates (uniform over ties) | A ahead / B ahead | p (sign-flip) "
          "| rates (first maximum) | A only / B only | p (McNemar) |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.results:
        print("\n".join(rows(path, args.tolerance)))
    print()
    print("| map | split | uniform over ties | first maximum | any maximum | maps with ties | median tied pixels |")
    print("|---|---|---|---|---|---|---|")
    for path in args.results:
        print("\n".join(ties(path)))


if __name__ == "__main__":
    main()
