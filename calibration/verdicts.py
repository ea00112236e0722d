"""The golden frames whose line verdict (`pass` / `fail` / `uncertain`, `agent.decide`) changes between the current
model and the candidate, each with the truth, so the report shows what a promotion would change on the line.

Truth is `fail` for a golden frame with at least one labelled box, else `pass`. A change is `fixed` when the
candidate's verdict is the truth and the current one's was not, `broken` the other way round, else `other`
(e.g. `fail` -> `uncertain` on a good frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.decide import Thresholds, decide
from agent.detections import Detections
from finetune.data.dataset import Dataset


def change_kind(truth: str, before: str, after: str) -> str:
    if after == truth and before != truth:
        return "fixed"
    if before == truth and after != truth:
        return "broken"
    return "other"


def verdict_changes(golden: Dataset, entry_ids: Sequence[int | None], current: Sequence[Detections],
                    candidate: Sequence[Detections], thresholds: tuple[Thresholds, Thresholds], run_dir: Path
                    ) -> dict[str, Any]:
    """Counts and one row per changed frame: entry id, image (relative to `run_dir`), truth and both verdicts."""
    rows = []
    for index, sample in enumerate(golden.samples):
        before = decide(current[index], thresholds[0]).verdict
        after = decide(candidate[index], thresholds[1]).verdict
        if before == after:
            continue
        truth = "fail" if len(sample.detections) else "pass"
        rows.append({"entry_id": entry_ids[index], "image": _relative(sample.image, run_dir), "truth": truth,
                     "current": before, "candidate": after, "change": change_kind(truth, before, after)})
    return {"frames": len(golden.samples), "changed": len(rows),
            "fixed": sum(r["change"] == "fixed" for r in rows), "broken": sum(r["change"] == "broken" for r in rows),
            "frames_changed": rows}


def _relative(image: Path, run_dir: Path) -> str:
    image = image.absolute()
    return image.relative_to(run_dir.absolute()).as_posix() if image.is_relative_to(run_dir.absolute()) else str(image)
