"""Resumable state of a run: `run_dir/checkpoints/` and the fingerprint a resumption must match.

A checkpoint is a folder `checkpoints/step-NNNNNNN/` (adapter safetensors + `state.pt` with optimizer, scheduler,
scaler, step and RNG states, read back with `torch.load(weights_only=True)`, which refuses arbitrary pickles) made
visible by an atomic rewrite of `checkpoints/latest.json`; a folder the pointer does not name is an interrupted write.
Batches are a pure function of (seed, step), so a resumed run sees exactly the batches the killed run would have.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from agent.store.files import base_identity, utc_now, write_json_atomic
from finetune.lora import save_adapter
from finetune.train.config import TrainConfig, TrainError

CHECKPOINTS = "checkpoints"
LATEST = "latest.json"


class Checkpoints:
    """`run_dir/checkpoints/`: the latest resumable state, switched atomically through `latest.json`."""

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / CHECKPOINTS
        self.pointer = self.root / LATEST

    def save(self, step: int, model: Any, state: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:07d}"
        tmp = self.root / f".step-{step:07d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_adapter(model, tmp)
        torch.save(state, tmp / "state.pt")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        write_json_atomic(self.pointer, {"step": step, "dir": final.name, "saved_at": utc_now()})
        self._remove_stale(keep=final.name)
        return final

    def _remove_stale(self, keep: str) -> None:
        for path in self.root.iterdir():
            if path.is_dir() and path.name != keep:
                shutil.rmtree(path, ignore_errors=True)

    def latest(self) -> Path | None:
        if not self.pointer.is_file():
            return None
        directory = self.root / str(json.loads(self.pointer.read_text())["dir"])
        if not (directory / "state.pt").is_file():
            raise TrainError(f"checkpoint pointer {self.pointer} names {directory}, which is incomplete")
        return directory

    def load_into(self, directory: Path, model: Any) -> dict[str, Any]:
        """Copy the checkpoint's LoRA weights into `model`; return the training state (weights-only unpickling)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(directory / "adapter_model.safetensors")))
        state: dict[str, Any] = torch.load(directory / "state.pt", weights_only=True)
        return state


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint(model_dir: Path, data_hash: str, config: TrainConfig, init_adapter: Path | None) -> dict[str, Any]:
    """What must not change between a killed run and its resumption."""
    keep = ("batch_size", "lr", "seed", "lora", "tasks", "shuffle_boxes", "loc_sigma", "unfreeze_vision_epoch",
            "vision_lr_scale", "warmup_steps", "weight_decay", "max_steps", "epochs")
    # the recipe options count only when set, so a run killed before they existed still resumes
    recipe = ("augment", "hard_fraction", "hard_weight", "schedule", "stage_ends", "task_mix")
    defaults = TrainConfig().to_json()
    settings = {k: v for k, v in config.to_json().items()
                if k in keep or (k in recipe and v != defaults[k])}
    return {"base": base_identity(model_dir), "data_hash": data_hash, "settings": settings,
            "init_adapter": str(init_adapter) if init_adapter else None}


def check_resumable(run_dir: Path, expected: dict[str, Any]) -> None:
    saved = json.loads((run_dir / "config.json").read_text()).get("fingerprint", {})
    expected = json.loads(json.dumps(expected))  # compare as stored: tuples come back from JSON as lists
    differ = sorted(k for k in expected if saved.get(k) != expected[k])
    if differ:
        raise TrainError(f"cannot resume {run_dir}: {differ} differ from the interrupted run "
                         f"(was {[saved.get(k) for k in differ]})")
