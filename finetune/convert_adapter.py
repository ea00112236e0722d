"""`edge-inspect model convert --adapter`: a PEFT LoRA adapter trained on the remote-code Florence-2 (maestro,
autodistill: keys like `base_model.model.language_model.model.encoder.layers.0.self_attn.q_proj.lora_A.weight`,
an lm_head LoRA with 51,289 rows) -> an adapter for the native model, checked against a native base directory.

- keys renamed by `finetune.remote_layout` (the part after the module name, `lora_A.weight`, is kept);
- a tensor one vocabulary longer in the base (lm_head's `lora_B`, a saved `lm_head`/embedding copy) is zero-padded to
  the base's rows: the new rows (`<image>`, padding) get no update, as the old model had no such rows to update;
- full copies of base weights PEFT saves beside the LoRA (`lm_head.base_layer.weight` when lm_head is a target:
  `save_embedding_layers`) are dropped when they equal the base's own weights (they carry nothing), and refused when
  they differ (the adapter then changed the base itself);
- every converted tensor must land on a module of the base with the shape it needs, else the adapter is refused and
  the keys that do not fit are named;
- adapter_config.json: `target_modules` becomes the exact list of native module names the adapter carries (the old
  list or regex named old modules), `base_model_name_or_path` the base directory, `task_type` none (Florence-2 is
  none of PEFT's task classes); everything else is kept.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from finetune.convert import TIED, ConvertError, check_output_dir, listed, pickle_advice, pickle_files, read_json
from finetune.remote_layout import is_remote_config, native_name

PEFT_PREFIX = "base_model.model."
WEIGHTS = "adapter_model.safetensors"
# `<module>.lora_A.weight`, `<module>.lora_embedding_B`, `<module>.lora_magnitude_vector`, ...
LORA_PART = re.compile(r"\.(lora_[A-Za-z_]+)(\.[A-Za-z_]+)?$")


def read_adapter(src: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not src.is_dir():
        raise ConvertError(f"adapter directory {src} does not exist")
    weights = src / WEIGHTS
    if not weights.is_file():
        pickles = pickle_files(src)
        raise ConvertError(pickle_advice(src, pickles) if pickles else f"{src} has no {WEIGHTS}")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ConvertError(f"{weights} is not readable safetensors: {exc}") from exc
    return read_json(src / "adapter_config.json"), tensors


def rename(key: str) -> str:
    """An old adapter key -> the native one; ConvertError for a key no rule covers."""
    if not key.startswith(PEFT_PREFIX):
        raise ConvertError(f"adapter key {key!r} does not start with {PEFT_PREFIX!r} (not a PEFT adapter file)")
    inner = key[len(PEFT_PREFIX):]
    new = native_name(inner)
    if new is None and inner.startswith(("model.", "lm_head.")):
        raise ConvertError(f"adapter key {key!r} is already in the native layout: this adapter needs no conversion")
    if new is None:
        raise ConvertError(f"adapter key {key!r}: no remote-code Florence-2 module of that name")
    return PEFT_PREFIX + new


def module_of(native_key: str) -> str:
    """`base_model.model.M.lora_A.weight` -> M; `base_model.model.M.base_layer.weight` -> M.base_layer."""
    inner = native_key[len(PEFT_PREFIX):]
    match = LORA_PART.search(inner)
    return inner[:match.start()] if match else inner.rsplit(".", 1)[0]


def base_modules(base: Path) -> dict[str, torch.nn.Module]:
    """The native base's modules by name, built on the meta device from its config.json (no weights read)."""
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    if is_remote_config(read_json(base / "config.json")):
        raise ConvertError(f"base {base} is itself in the remote-code layout: convert it first with "
                           f"`edge-inspect model convert --model {base} --out DIR` and give DIR as --base")
    try:
        config = Florence2Config.from_pretrained(str(base))
    except (OSError, ValueError) as exc:
        raise ConvertError(f"base {base} is not a native Florence-2 directory: {exc}") from exc
    with torch.device("meta"):
        model = Florence2ForConditionalGeneration(config)
    return dict(model.named_modules())


def expected_shape(module: torch.nn.Module, part: str, tensor: torch.Tensor) -> tuple[int, ...] | None:
    """The shape `tensor` must have on `module` for a LoRA `part`; () when it can never fit; None when not checked
    here (a convolution, DoRA's magnitude: PEFT checks those when it loads the adapter)."""
    weight = getattr(module, "weight", None)
    if weight is None:
        return ()
    if weight.dim() != 2:
        return None
    rows, cols = int(weight.shape[0]), int(weight.shape[1])
    rank = int(tensor.shape[0]) if part in ("lora_A", "lora_embedding_A") else int(tensor.shape[-1])
    wanted = {"lora_A": (rank, cols), "lora_B": (rows, rank),  # Linear: W is out x in
              "lora_embedding_A": (rank, rows), "lora_embedding_B": (cols, rank)}  # Embedding: W is vocab x dim
    return wanted.get(part)


def pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    padded = tensor.new_zeros((rows, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    return padded


def fit(key: str, tensor: torch.Tensor, modules: dict[str, torch.nn.Module]) -> tuple[torch.Tensor, str | None]:
    """(the tensor as the base needs it, None) or (tensor, why it does not fit)."""
    name = module_of(key)
    if name not in modules:
        return tensor, f"{key}: the base has no module {name}"
    match = LORA_PART.search(key)
    want = expected_shape(modules[name], match.group(1) if match else "", tensor)
    if want is None or tuple(tensor.shape) == want:
        return tensor, None
    if want and tensor.dim() == 2 and tensor.shape[1] == want[1] and tensor.shape[0] < want[0]:
        return pad_rows(tensor, want[0]), None  # vocabulary rows the old model did not have
    return tensor, f"{key}: shape {tuple(tensor.shape)}, the base needs {want}"


def base_tensor(base: Path, module: str) -> torch.Tensor | None:
    """The base's own weight of `module` (a tied one saved under another name is found through TIED)."""
    from safetensors import safe_open

    path = base / "model.safetensors"
    if not path.is_file():
        return None
    base_layer = module.removesuffix(".base_layer") + ".weight"
    candidates = [base_layer, *TIED] if base_layer in TIED else [base_layer]
    with safe_open(str(path), "pt") as handle:
        names = set(handle.keys())
        return next((handle.get_tensor(n) for n in candidates if n in names), None)


def base_copy_problem(key: str, tensor: torch.Tensor, base: Path) -> str | None:
    """None when `tensor` (a full weight PEFT saved beside the LoRA) equals the base's rows; else why not."""
    own = base_tensor(base, module_of(key))
    if own is None or own.shape[1:] != tensor.shape[1:] or own.shape[0] < tensor.shape[0]:
        return f"{key}: a full weight copy the base has no matching tensor for"
    if not torch.allclose(own[: tensor.shape[0]].float(), tensor.float(), rtol=1e-3, atol=1e-4):
        return f"{key}: the adapter carries changed base weights (not a LoRA), which are not converted"
    return None


def converted_config(config: dict[str, Any], modules: list[str], base: Path) -> dict[str, Any]:
    new = dict(config)
    new.update(target_modules=sorted(modules), base_model_name_or_path=str(base), task_type=None)
    if new.get("modules_to_save"):
        raise ConvertError(f"adapter_config.json modules_to_save {new['modules_to_save']!r}: full module copies are "
                           "not converted; retrain without modules_to_save")
    return new


def convert_adapter(src: Path, out_dir: Path, base: Path) -> Path:
    """Convert the old-layout adapter in `src` for the native `base`; writes `out_dir` and returns it."""
    src, out_dir, base = Path(src), Path(out_dir), Path(base)
    config, tensors = read_adapter(src)
    check_output_dir(out_dir)
    modules = base_modules(base)
    renamed = {rename(k): v for k, v in tensors.items()}
    fitted, problems = {}, []
    for key, tensor in renamed.items():
        if LORA_PART.search(key) is None:  # a base weight PEFT saved beside the LoRA: checked, then dropped
            problem = base_copy_problem(key, tensor, base)
        else:
            fitted[key], problem = fit(key, tensor, modules)
        if problem:
            problems.append(problem)
    if problems:
        raise ConvertError(f"adapter {src} does not fit base {base}: {listed(problems, 6)}")
    new_config = converted_config(config, list({module_of(k) for k in fitted}), base)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in fitted.items()}, str(out_dir / WEIGHTS))
    (out_dir / "adapter_config.json").write_text(json.dumps(new_config, indent=2) + "\n")
    return out_dir
