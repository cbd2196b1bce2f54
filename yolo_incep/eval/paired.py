"""`compare --paired`: the cost of converting a model (e.g. its INT8 export) with an interval, and the difference of
two such costs (Inception's INT8 drop minus stock's), by the bootstrap's public functions.

`--versus A=B` resamples each arm's training seeds on its own: right for two recipes, too wide for one model in two
forms, where A's i-th source is B's i-th checkpoint exported, so that the seed spread is shared, not added. Here the
two arms of a pair draw the same seeds in every image resample (one seed draw for both), and two pairs draw
theirs independently (they are different training runs); every arm sees the same image resamples.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from . import bootstrap
from .report import CompareReport, Contrast

Pair = tuple[str, str]


def parse(specs: list[str], arms: list[str], counts: dict[str, int]) -> list[list[Pair]]:
    """'A=B' or 'A=B,C=D' arguments -> [[(A, B)], [(A, B), (C, D)]], checked against the comparison's arms and
    their number of sources (a pair's arms must list as many, in the same order)."""
    out = []
    for spec in specs:
        pairs = []
        for part in spec.split(","):
            a, sep, b = part.partition("=")
            if not (sep and a and b) or len(spec.split(",")) > 2:
                raise InputError(f"--paired {spec}: expected ARM=REF or ARM=REF,ARM2=REF2 (arm names of this "
                                 "comparison)")
            unknown = next((n for n in (a, b) if n not in arms), None)
            if unknown:
                raise InputError(f"--paired {spec}: {unknown} is not an arm of this comparison ({', '.join(arms)})")
            if a == b:
                raise InputError(f"--paired {spec}: an arm against itself")
            if counts[a] != counts[b]:
                raise InputError(f"--paired {spec}: {a} has {counts[a]} sources and {b} {counts[b]}; a pair's arms "
                                 "list the same checkpoints in two forms, in the same order")
            pairs.append((a, b))
        out.append(pairs)
    return out


def contrasts(report: CompareReport, scores: dict[str, dict[str, np.ndarray]], specs: list[list[Pair]],
              seed: int = bootstrap.SEED) -> list[Contrast]:
    """One Contrast per spec: A - B for one pair, (A - B) - (C - D) for two, on arm means over seeds; `scores` maps a
    row name to its metric values on the shared image resamples (compare's), arms as in `report.arms`."""
    arms = {a.name: a for a in report.arms if not a.sliced}
    keys = bootstrap.delta_keys(report.sizes)  # the buckets of --sizes
    out = []
    for i, pairs in enumerate(specs):
        value: dict[str, float | None] = {k: 0.0 for k in keys}
        other = {k: 0.0 for k in keys}  # resampled A (+ D): minus `base` it is the spec's difference
        base = {k: 0.0 for k in keys}
        for j, (a, b) in enumerate(pairs):
            sign = 1 if j == 0 else -1
            draw = (seed, 1000 + i, j)  # one seed draw for both arms of a pair, another for the next pair
            sa, sb = (bootstrap.arm_scores([scores[r] for r in arms[n].rows], draw) for n in (a, b))
            for k in keys:
                ma, mb = arms[a].mean[k], arms[b].mean[k]
                value[k] = None if value[k] is None or ma is None or mb is None else value[k] + sign * (ma - mb)
                other[k] = other[k] + (sa[k] if sign > 0 else sb[k])
                base[k] = base[k] + (sb[k] if sign > 0 else sa[k])
        delta = {k: bootstrap.paired_delta(value[k], base[k], other[k]) for k in keys}
        (a, b), rest = pairs[0], pairs[1:]
        if rest:
            out.append(Contrast(f"({a} vs {b})", f"({rest[0][0]} vs {rest[0][1]})", delta))
        else:
            out.append(Contrast(a, f"{b} (paired)", delta))
    return out
