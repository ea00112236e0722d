"""Model families as data: which backends serve a family, and how a model directory says which family it is.

A family (Florence-2, Mask R-CNN, PaliGemma 2) is one entry of `FAMILIES`: its backends, each a
builder `DetectorRequest -> Detector` that imports its heavy code only when called. `create_detector`
(agent/detector/factory.py) looks the model's family up with `family_of` and calls the builder: adding a family is
adding an entry, not another branch.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.detector.base import Detector, DetectorError

DEFAULT_FAMILY = "florence2"
EXPORT_MANIFEST = "export.json"  # an ONNX export's own manifest (finetune/export.py); may name its family


@dataclass(frozen=True)
class DetectorRequest:
    """What every backend builder gets: the model (directory or hub id), an optional adapter, the class names
    (None: the model directory's classes.txt), the device (auto | cpu | cuda) and the decode budget."""

    model: str | Path
    adapter: str | Path | None = None
    class_names: Sequence[str] | None = None
    device: str = "auto"
    max_new_tokens: int = 64
    quantize: str = "none"  # none | int8-weight (agent/detector/quantize.py; Florence-2's torch-fast only)


Builder = Callable[[DetectorRequest], Detector]


@dataclass(frozen=True)
class Family:
    """One model family: its name, the `config.json` model types that mark its checkpoints, and its backends."""

    name: str
    model_types: tuple[str, ...]
    backends: Mapping[str, Builder]
    quantizes: bool = False  # whether its builders pass `quantize` on (each backend then checks its own modes)

    def build(self, backend: str, request: DetectorRequest) -> Detector:
        builder = self.backends.get(backend)
        if builder is None:
            raise DetectorError(f"unknown detector backend {backend!r} for the {self.name} family; available: "
                                f"{', '.join(self.backends)}")
        if request.quantize != "none" and not self.quantizes:
            raise DetectorError(f"quantize {request.quantize!r}: the {self.name} family serves unquantized weights "
                                "only (quantize: none)")
        return builder(request)


FAMILIES: dict[str, Family] = {}
# Each family's registration module (light: no torch at import). Loaded by name, like plugins: each imports this
# module to register itself, so importing them here would be a cycle.
FAMILY_MODULES = ("agent.detector.florence2_family", "agent.detector.maskrcnn.family",
                  "agent.detector.paligemma.family")


def families() -> dict[str, Family]:
    """Every family, registered on first use."""
    for module in FAMILY_MODULES:
        importlib.import_module(module)
    return FAMILIES


def register_family(family: Family) -> Family:
    """Add (or replace) a family in `FAMILIES`; returns it, so a module can keep a name for its entry."""
    FAMILIES[family.name] = family
    return family


def family_of(model: str | Path) -> str:
    """The family of a model: its `config.json` `model_type` (e.g. `florence2`), else an ONNX export's `family`
    (exports from before families existed are Florence-2), else the default family (a hub id, a directory without
    either file). A `model_type` no family claims is a `DetectorError` naming the file and the known types."""
    directory = Path(model)
    config = directory / "config.json"
    if config.is_file():
        return _family_of_model_type(config, _read_json(config).get("model_type"))
    manifest = directory / EXPORT_MANIFEST
    if manifest.is_file():
        return str(_read_json(manifest).get("family", DEFAULT_FAMILY))
    return DEFAULT_FAMILY


def _family_of_model_type(config: Path, model_type: object) -> str:
    for family in families().values():
        if model_type in family.model_types:
            return family.name
    known = sorted(t for f in families().values() for t in f.model_types)
    raise DetectorError(f"{config}: model_type {model_type!r} belongs to no model family this box serves; known: "
                        f"{', '.join(known)}")


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DetectorError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DetectorError(f"{path} is not a JSON object")
    return data
