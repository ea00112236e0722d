"""Model swap faults: the daemon is asked (SIGHUP or `cmd/reload`) to switch to adapters it must refuse.

- the store's current adapter corrupted on disk after it was promoted (sha256 no longer matches its manifest),
- the store's current adapter belonging to another base model (manifest base identity differs),
- a config `model.adapter` whose tensors do not fit the base (shape mismatch),
- a config `model.adapter` whose safetensors file is garbage,
- a config `model.adapter` holding pickle weights (`adapter_model.bin`) only.

Each is refused (`reload_failed` event, error reply naming the cause) while results keep flowing with the model
that was serving before. A final good adapter is accepted, proving the refusals are not a reload that never works.
"Worse" adapters (valid but less accurate) are the recalibration gate's business before promotion; the daemon has no
labelled data to judge accuracy with, so it is not tested here.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file

from agent.store.model_store import ModelStore
from tests.faults.helpers import max_seq
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, DaemonProcess, send_command, write_config

pytestmark = pytest.mark.faults

WEIGHTS = "adapter_model.safetensors"


def make_lora(model_dir: Path, out: Path) -> Path:
    """A real PEFT LoRA adapter (safetensors) for the tiny model; LoRA B starts at zero, so outputs do not change."""
    from peft import LoraConfig, get_peft_model
    from transformers import Florence2ForConditionalGeneration

    model = Florence2ForConditionalGeneration.from_pretrained(model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(str(out))
    return out


def copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def misshapen(adapter: Path) -> Path:
    """Every LoRA A matrix one column wider than the layer it adapts: loads as safetensors, cannot fit the base."""
    tensors = load_file(adapter / WEIGHTS)
    widened = {k: (v.new_zeros(v.shape[0], v.shape[1] + 1) if "lora_A" in k else v) for k, v in tensors.items()}
    save_file(widened, str(adapter / WEIGHTS))
    return adapter


def pickled_only(adapter: Path) -> Path:
    (adapter / WEIGHTS).rename(adapter / "adapter_model.bin")
    return adapter


def garbage(adapter: Path) -> Path:
    (adapter / WEIGHTS).write_bytes(b"\x00garbage, not safetensors" * 100)
    return adapter


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-16:] = bytes(b ^ 0xFF for b in data[-16:])
    path.write_bytes(bytes(data))


def set_config_adapter(config: Path, adapter: Path | None) -> None:
    data = yaml.safe_load(config.read_text())
    data["model"]["adapter"] = None if adapter is None else str(adapter)
    config.write_text(yaml.safe_dump(data))


class Harness:
    """The daemon under test, its results, events and the refusals collected so far."""

    def __init__(self, daemon: DaemonProcess, broker: Broker, results: Subscriber, events: Subscriber) -> None:
        self.daemon, self.broker, self.results, self.events = daemon, broker, results, events
        self.figures: list[str] = []

    def reload_by_signal(self) -> str:
        seen = len(self.failures())
        self.daemon.signal(signal.SIGHUP)
        got = self.events.wait_for(lambda p: len([e for e in p if e["event"] == "reload_failed"]) > seen, 60)
        failures = [e for e in got if e["event"] == "reload_failed"]
        return str(failures[-1]["error"]) if len(failures) > seen else "(no reload_failed event within 60 s)"

    def reload_by_command(self) -> dict:
        return send_command(self.broker, "reload", json.dumps({"scope": "all"}).encode(), timeout_s=90)

    def failures(self) -> list[dict]:
        return [e for e in self.events.payloads() if e["event"] == "reload_failed"]

    def models_after(self, seq: int, count: int = 3) -> set[str]:
        """Model versions on the next `count` results after `seq` (waits for them)."""
        payloads = self.results.wait_for(lambda p: len([x for x in p if x["seq"] > seq]) >= count, 60)
        return {p["model"] for p in payloads if p["seq"] > seq}

    def still_serving(self, case: str, error: str, model: str) -> None:
        models = self.models_after(max_seq(self.results.payloads()))
        self.figures.append(f"{case}: refused ({error[:90]}...), then results from {sorted(models)}")
        assert models == {model}, f"{case}: expected results from {model} after the refusal: {self.figures}"


def test_corrupt_foreign_misshapen_garbage_and_pickled_adapters_are_refused_while_the_old_model_serves(
        tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker, results: Subscriber) -> None:
    lora = make_lora(tiny_model_dir, tmp_path / "lora")
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(tiny_model_dir)
    good = store.add_adapter(lora)
    store.promote(good)
    config = write_config(tmp_path, tiny_model_dir, mosquitto)
    events = Subscriber(mosquitto, f"{BASE}/events", client_id="hmi-events")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    h = Harness(daemon, mosquitto, results, events)
    serving = f"{tiny_model_dir.name}+{good}"
    try:
        assert h.models_after(0) == {serving}, daemon.log_tail()

        rotten = store.add_adapter(lora)
        store.promote(rotten)  # verified at promotion; the disk rots afterwards
        flip_bytes(store.path(rotten) / WEIGHTS)
        error = h.reload_by_signal()
        assert "corrupt" in error and rotten in error, f"corrupt store adapter: {error}"
        h.still_serving("corrupt store adapter (SIGHUP)", error, serving)

        foreign = store.add_adapter(lora)
        store.promote(foreign)
        manifest = store.path(foreign) / "manifest.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "base": "sha256:" + "0" * 64}))
        reply = h.reload_by_command()
        assert not reply["ok"] and "base" in reply["error"] and foreign in reply["error"], reply
        h.still_serving("adapter of another base (cmd/reload)", reply["error"], serving)

        for case, adapter, cause in [
            ("misshapen config adapter", misshapen(copy_adapter(lora, tmp_path / "wide")), "does not fit"),
            ("garbage safetensors", garbage(copy_adapter(lora, tmp_path / "garbage")), "garbage"),
            ("pickle-only adapter", pickled_only(copy_adapter(lora, tmp_path / "pickled")), "safetensors"),
        ]:
            set_config_adapter(config, adapter)
            reply = h.reload_by_command()
            assert not reply["ok"] and "keeps serving" in reply["error"], f"{case}: {reply}"
            assert str(adapter) in reply["error"] or cause in reply["error"], f"{case}: {reply}"
            h.still_serving(f"{case} (cmd/reload)", reply["error"], serving)

        set_config_adapter(config, None)
        fixed = store.add_adapter(lora)
        store.promote(fixed)
        reply = h.reload_by_command()
        assert reply["ok"] and reply["model"] == f"{tiny_model_dir.name}+{fixed}", f"good adapter refused: {reply}"
        # results already in the outbox were inspected by the old model; the newest ones come from the new one
        swapped_at = max_seq(results.payloads())
        newest = results.wait_for(lambda p: max_seq(p) >= swapped_at + 10, 60)[-1]["model"]
        assert newest == reply["model"], f"newest result after the good swap came from {newest}"
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        events.close()
        daemon.ensure_dead()
    print("\nmodel swap:\n  " + "\n  ".join(h.figures))
    assert len(h.failures()) == 5, f"expected 5 reload_failed events: {h.failures()}"
