"""LoRA run settings: out-of-range values are refused with the setting's name."""

from __future__ import annotations

import pytest

from finetune.train.config import TrainConfig, TrainError


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(TrainError, match="batch_size=0"):
        TrainConfig(batch_size=0)
    with pytest.raises(TrainError, match="<CAPTION>"):
        TrainConfig(tasks=("<CAPTION>",))
    with pytest.raises(TrainError, match="min_steps=-1"):
        TrainConfig(min_steps=-1)


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(TrainError, match="amp='fp8': must be auto, off, bf16 or fp16"):
        TrainConfig(amp="fp8")
