"""COCO detection results (`{"image_id", "category_id", "bbox": [x, y, w, h], "score"}` entries) held as columns.

compare scores hundreds of thousands of detections per model: as Python dicts each costs about a microsecond to
build, check, convert to arrays and write, and a million of them kept alive slow every pass of the garbage
collector. As columns they are numpy arrays from the file to the evaluation. `Results` is still a sequence of those
dicts (length, indexing, iteration, `in`, equality with a list of them) for the code and tests that read
detections one by one, and `json()` writes exactly what `json.dumps` writes of that list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
import numpy as np


@dataclass(eq=False)
class Results(Sequence):
    """Detections as columns, in the order of the results list they stand for."""

    image_id: np.ndarray  # (N,) int64
    category_id: np.ndarray  # (N,) int64
    bbox: np.ndarray  # (N, 4) float64: x, y, w, h
    score: np.ndarray  # (N,) float64

    @classmethod
    def of(cls, detections) -> Results:
        """Results as they are, or from a list of COCO results dicts."""
        if isinstance(detections, Results):
            return detections
        dets = list(detections)
        return cls(np.array([d["image_id"] for d in dets], np.int64).reshape(-1),
                   np.array([d["category_id"] for d in dets], np.int64).reshape(-1),
                   np.array([d["bbox"] for d in dets], float).reshape(-1, 4),
                   np.array([d["score"] for d in dets], float).reshape(-1))

    def take(self, index: np.ndarray) -> Results:
        """The entries at `index` (positions or a boolean mask), in its order."""
        return Results(self.image_id[index], self.category_id[index], self.bbox[index], self.score[index])

    def __len__(self) -> int:
        return len(self.score)

    def __getitem__(self, k: int) -> dict:
        if not isinstance(k, (int, np.integer)):
            raise TypeError("Results are indexed by position; take() selects several")
        return {"image_id": int(self.image_id[k]), "category_id": int(self.category_id[k]),
                "bbox": self.bbox[k].tolist(), "score": float(self.score[k])}

    def __iter__(self):
        return iter(self.to_list())

    def __eq__(self, other) -> bool:
        if isinstance(other, Results):
            return all(np.array_equal(a, b) for a, b in zip(self._columns(), other._columns()))
        return isinstance(other, Sequence) and self.to_list() == list(other)

    __hash__ = None  # mutable arrays: no hash, as a list

    def _columns(self) -> tuple[np.ndarray, ...]:
        return self.image_id, self.category_id, self.bbox, self.score

    def to_list(self) -> list[dict]:
        """The results list as dicts (Python ints and floats)."""
        return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in
                zip(self.image_id.tolist(), self.category_id.tolist(), self.bbox.tolist(), self.score.tolist())]

    def json(self) -> bytes:
        """json.dumps(self.to_list()), without the dicts: numbers as Python's repr writes them (json's own for
        finite floats; a non-finite one, which json writes otherwise, takes json's path)."""
        if not (np.isfinite(self.bbox).all() and np.isfinite(self.score).all()):
            return json.dumps(self.to_list()).encode()
        entries = [f'{{"image_id": {i}, "category_id": {c}, "bbox": [{x!r}, {y!r}, {w!r}, {h!r}], "score": {p!r}}}'
                   for i, c, (x, y, w, h), p in zip(self.image_id.tolist(), self.category_id.tolist(),
                                                    self.bbox.tolist(), self.score.tolist())]
        return f"[{', '.join(entries)}]".encode()
