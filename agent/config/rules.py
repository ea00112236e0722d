"""Per-class settings of the `model` section beyond a threshold: the size rules (`model.size_rules`), and the check
that every per-class setting names a class the model has."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SizeRuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    min_length_mm: float | None = Field(
        default=None, gt=0, description="A box at least this long on the belt (mm) is big enough to be a defect"
    )
    min_area_mm2: float | None = Field(
        default=None, gt=0, description="A box at least this large on the belt (mm^2) is big enough to be a defect"
    )

    @model_validator(mode="after")
    def _some_minimum(self) -> SizeRuleConfig:
        if self.min_length_mm is None and self.min_area_mm2 is None:
            raise ValueError("a size rule needs min_length_mm or min_area_mm2 (or both)")
        return self


def known_classes(per_class: dict[str, Any], classes: list[str], what: str) -> None:
    """Refuse per-class settings for a class the model does not have (a typo would otherwise never apply)."""
    unknown = sorted(set(per_class) - set(classes))
    if unknown:
        raise ValueError(f"{what} for unknown classes {unknown}; classes are {classes}")
