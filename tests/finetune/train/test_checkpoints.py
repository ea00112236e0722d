"""Checkpoints of a LoRA run: one visible state behind an atomic pointer, and the fingerprint a resumption checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from finetune.train.checkpoints import Checkpoints, check_resumable, fingerprint, restore_rng, rng_state
from finetune.train.config import TrainConfig, TrainError
from tests.finetune.lora_helpers import FakeAdapterModel


def test_the_pointer_names_the_latest_checkpoint_and_older_ones_are_removed(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    assert checkpoints.latest() is None
    checkpoints.save(3, FakeAdapterModel(), {"step": 3})
    (checkpoints.root / ".step-0000006.tmp").mkdir()  # an interrupted write
    final = checkpoints.save(6, FakeAdapterModel(), {"step": 6})
    assert checkpoints.latest() == final and final.name == "step-0000006"
    assert sorted(p.name for p in checkpoints.root.iterdir()) == ["latest.json", "step-0000006"]
    assert torch.load(final / "state.pt", weights_only=True) == {"step": 6}


def test_a_pointer_to_an_incomplete_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    (checkpoints.root / "step-0000009").mkdir(parents=True)
    checkpoints.pointer.write_text(json.dumps({"step": 9, "dir": "step-0000009"}))
    with pytest.raises(TrainError, match="which is incomplete"):
        checkpoints.latest()


def test_resuming_with_other_settings_names_what_differs(tiny_model_dir: Path, tmp_path: Path) -> None:
    saved = fingerprint(tiny_model_dir, "sha256:data", TrainConfig(), None)
    (tmp_path / "config.json").write_text(json.dumps({"fingerprint": saved}))
    check_resumable(tmp_path, fingerprint(tiny_model_dir, "sha256:data", TrainConfig(), None))  # tuples as lists
    with pytest.raises(TrainError, match=r"\['data_hash', 'settings'\] differ from the interrupted run"):
        check_resumable(tmp_path, fingerprint(tiny_model_dir, "sha256:other", TrainConfig(lr=1e-3), None))
    check_resumable(tmp_path, fingerprint(tiny_model_dir, "sha256:data", TrainConfig(device="cpu"), None))


def test_rng_state_round_trips() -> None:
    state = rng_state()
    first = torch.rand(3)
    restore_rng(state)
    assert torch.equal(torch.rand(3), first)
