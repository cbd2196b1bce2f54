"""Where a model loses small objects, as `compare` reports it: TIDE errors by size, PR curves, small-object confusion.

One `Analysis` per evaluated row, from the evaluation compare already ran (errors.py, curves.py: every size bucket
of `--sizes`) and its kept detections (confusion.py); its parts land in report.json (`errors`, `errors_delta`,
`AP50_by_size`, `confusion_small`), report.csv, the printed table, pr_by_size.png and confusion_small.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_bytes
from . import buckets, confusion, curves, errors

AT = "@500"  # everything is read at compare's largest maxDets (coco.MAX_DETS[-1])


@dataclass
class Analysis:
    """TIDE breakdown (errors.breakdown), mean PR curve per size (curves.pr_by_size), small-object confusion."""

    errors: dict[str, dict[str, float | None]]
    pr: dict[str, list[float] | None]
    confusion: confusion.Confusion

    @classmethod
    def of(cls, e, gt: dict, detections: list[dict]) -> Analysis:
        """From compare's evaluation (matching.Evaluation) and the detections it scored."""
        return cls(errors.breakdown(e), curves.pr_by_size(e), confusion.small_confusion(gt, detections))

    @property
    def sizes(self) -> list[str]:
        """The size buckets analysed (bucket keys: 'small', ..., 'vt', ...)."""
        return [k for k in self.errors if k != buckets.ALL.key]

    @property
    def flat(self) -> dict[str, float | None]:
        """'AP50_small@500' (the base) and 'dAP50_small[cls]@500' (AP50 recovered by fixing cls errors), ..."""
        out = {}
        for size in self.sizes:
            out[f"AP50_{size}{AT}"] = _round(self.errors[size]["AP50"])
            out |= {f"dAP50_{size}[{t}]{AT}": _round(self.errors[size][t]) for t in errors.ERROR_TYPES}
        return out

    def to_json(self) -> dict:
        """report.json keys of a model row."""
        return {"errors": {s: {t: _round(self.errors[s][t]) for t in errors.ERROR_TYPES} for s in self.sizes},
                "AP50_by_size": {s: _round(self.errors[s]["AP50"]) for s in self.sizes},
                "confusion_small": self.confusion.to_json()}

    def delta_json(self, base: Analysis) -> dict:
        """report.json `errors_delta`: this row's AP lost per size and type minus the baseline's."""
        return {"errors_delta": {s: {t: _minus(self.errors[s][t], base.errors[s][t]) for t in errors.ERROR_TYPES}
                                 for s in self.sizes}}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 6)


def table_rows(cells: list[Analysis | None], base: list[Analysis | None]) -> list[list[str]]:
    """Printed-table rows: per size, AP50 then the AP50 each error type costs, '(+delta)' against `base` (per cell)."""
    lines = []
    sizes = next((a.sizes for a in cells if a is not None), [])
    for size in sizes:
        for t in ("AP50", *errors.ERROR_TYPES):
            label = f"AP50_{size}{AT}" if t == "AP50" else f"  lost to {t}"
            row = [label]
            for a, b in zip(cells, base):
                v = None if a is None else a.errors[size][t]
                w = None if b is None or b is a else b.errors[size][t]
                row.append("" if a is None else "-" if v is None else
                           f"{v:.3f}" if w is None else f"{v:.3f} ({v - w:+.3f})")
            lines.append(row)
    return lines


def write_files(named: dict[str, Analysis], out: Path, figures: bool = True) -> None:
    """confusion_small.csv (one block per row) and, with `figures`, pr_by_size.png (one curve per row and size),
    atomically."""
    if not named:
        return
    if figures:
        atomic_write_bytes(out / "pr_by_size.png", curves.pr_png({n: a.pr for n, a in named.items()}))
    atomic_write_bytes(out / "confusion_small.csv", confusion.csv_text({n: a.confusion for n, a in named.items()}))
