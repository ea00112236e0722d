"""`torch-eager` backend: native transformers Florence-2 with HF `generate`, the correctness reference.

Loads `Florence2ForConditionalGeneration` + `Florence2Processor` from a hub id or a local `save_pretrained`
directory, optionally merges a PEFT LoRA adapter, and turns BGR frames into `Detections` with per-box scores.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch

from agent import modeldir
from agent.detections import Detections
from agent.detector.base import DetectorError, check_frame, timed_detect
from agent.detector.constraints import OdGrammar, OdLogitsProcessor
from agent.detector.generation import describe, neutralize
from agent.detector.loc import from_loc_text
from agent.detector.scoring import DEFAULT_LOC_WINDOW, constrained_log_probs, scored_detections
from agent.detector.tasks import Region, Task
from agent.store.manifest import adapter_label

TASK = "<OD>"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorOptions:
    device: str = "auto"  # auto | cpu | cuda
    max_new_tokens: int = 64
    constrained: bool = True
    loc_window: int = DEFAULT_LOC_WINDOW
    min_boxes: int = 0  # > 0 forces that many boxes (benchmarks use it to fix the decode length)
    max_boxes: int | None = None
    quantize: str = "none"  # none | int8-weight (torch-fast only: agent.detector.quantize)
    dtype: str = "auto"  # auto: float16 on CUDA, float32 on CPU; float16 | float32 to choose (tests, benchmarks)


def check_quantize(backend: str, mode: str, supported: Sequence[str]) -> None:
    """Refuse a quantization mode the backend cannot run, naming both (before any model is loaded)."""
    if mode not in supported:
        raise DetectorError(f"quantize {mode!r} is not available on backend {backend!r} (it runs: "
                            f"{', '.join(supported)}; int8-weight needs backend 'torch-fast', the onnx backend takes "
                            "an INT8 export instead)")


def resolve_model_source(model: str | Path) -> str:
    """A local directory (must exist and hold config.json) or a hub id like `org/name`; else a clear error."""
    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DetectorError(f"model directory {path} has no config.json: not a save_pretrained checkpoint")
        return str(path)
    if path.exists() or modeldir.looks_local(text) or path.suffix:
        raise DetectorError(f"model directory {path} does not exist (or is not a directory)")
    return text


def check_florence_config(source: str) -> None:
    """Refuse non-Florence checkpoints before transformers builds the wrong model."""
    check_model_type(source, "florence2", "Florence-2")


def check_model_type(source: str, expected: str, title: str) -> None:
    """Refuse a checkpoint whose config.json names another `model_type` than `expected` (a family called `title`)."""
    cfg_path = Path(source) / "config.json"
    if not cfg_path.is_file():
        return  # a hub id: transformers checks it when loading
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise DetectorError(f"{cfg_path} is not valid JSON: {exc}") from exc
    model_type = config.get("model_type")
    if model_type != expected:
        raise DetectorError(f"{source} is a {model_type!r} checkpoint, not {title} (model_type {expected!r})")
    if expected == "florence2" and ("auto_map" in config or "dim_embed" in (config.get("vision_config") or {})):
        # microsoft/Florence-2-* ship remote code (never run here) and another weight layout
        raise DetectorError(f"{source} is a remote-code Florence-2 checkpoint (microsoft/Florence-2-* layout): "
                            f"convert it once with `edge-inspect model convert --model {source} --out DIR`")


def read_class_names(source: str, class_names: Sequence[str] | None) -> tuple[str, ...]:
    if class_names:
        return tuple(class_names)
    try:
        return modeldir.read_class_names(source)
    except modeldir.MissingClassList as exc:
        raise DetectorError(f"no class names given and {exc.path} does not exist") from None


DTYPES = {"float16": torch.float16, "float32": torch.float32}


def pick_dtype(requested: str, device: torch.device, cuda_dtype: torch.dtype = torch.float16) -> torch.dtype:
    """The weights' and activations' dtype: the family's on CUDA (FP16; PaliGemma 2: BF16) and FP32 on CPU unless
    one is asked for."""
    if requested == "auto":
        return cuda_dtype if device.type == "cuda" else torch.float32
    if requested not in DTYPES:
        raise DetectorError(f"dtype {requested!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[requested]


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DetectorError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(requested)


class Florence2Detector:
    """Batched Florence-2 `<OD>` detector. `detect(frames)` -> one `Detections` per BGR frame.

    Another family served through HF `generate` (PaliGemma 2) subclasses it, replacing the model type and class, the
    CUDA dtype, `_make_grammar`, `_build_prompt_ids`, `generate` and `_to_detections`.
    """

    # Full-vocab id -> column of the log-probs `generate` returns; None: the columns are the full vocabulary.
    score_columns: torch.Tensor | None = None
    model_type, title = "florence2", "Florence-2"  # the config.json model_type this class loads, and its name
    model_class = "Florence2ForConditionalGeneration"  # the transformers class that loads it
    cuda_dtype = torch.float16  # the inference dtype on a GPU (CPU: float32)
    backend = "torch-eager"
    quantize_modes: tuple[str, ...] = ("none",)

    def __init__(
        self,
        model: str | Path,
        adapter: str | Path | None = None,
        class_names: Sequence[str] | None = None,
        options: DetectorOptions | None = None,
    ) -> None:
        self.options = options or DetectorOptions()
        check_quantize(self.backend, self.options.quantize, self.quantize_modes)
        self.source = resolve_model_source(model)
        check_model_type(self.source, self.model_type, self.title)
        self.class_names = read_class_names(self.source, class_names)
        self.device = pick_device(self.options.device)
        self.dtype = pick_dtype(self.options.dtype, self.device, self.cuda_dtype)
        self.processor, self.model = self._load(self.source)
        if adapter is not None:
            self.model = merge_adapter(self.model, Path(adapter), self.source)
        self._prepare_for_inference()
        self.overridden_generation = self._neutralize_generation()
        self.grammar = self._make_grammar()
        self.version = model_version(self.source, adapter)
        self._prompt_ids = self._build_prompt_ids()  # a family's own detection prompt (PaliGemma: `detect a ; b`)
        self.last_timing: dict[str, float] = {}
        self.task_grammars: dict[str, Any] = {}  # region tasks' grammars, built on first use (task_runner.py)

    def _load(self, source: str) -> tuple[Any, Any]:
        import transformers

        try:
            processor = transformers.AutoProcessor.from_pretrained(source)
            # use_safetensors: a pickle checkpoint (pytorch_model.bin) can run code when loaded; never fall back to it
            model = getattr(transformers, self.model_class).from_pretrained(source, dtype=self.dtype,
                                                                           use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise DetectorError(f"could not load {self.title} from {source!r}: {exc}") from exc
        return processor, model

    def _make_grammar(self) -> Any:
        return OdGrammar(self.processor.tokenizer, self.class_names)

    def _prepare_for_inference(self) -> None:
        # Inference never needs activation checkpointing; it would only recompute and slow the decode loop.
        disable = getattr(self.model, "activation_checkpointing_disable", None)
        (disable or self.model.gradient_checkpointing_disable)()
        self.model.to(device=self.device, dtype=self.dtype).eval()
        self.model.requires_grad_(False)

    def _build_prompt_ids(self) -> torch.Tensor:
        """The detection prompt's ids: Florence-2's `<OD>`; another family overrides this."""
        return self.prompt_ids_for(TASK)

    def _neutralize_generation(self) -> dict[str, Any]:
        """The checkpoint's generation settings that would fight the grammar (beams, n-gram bans, forced BOS/EOS,
        ...) are set to neutral values, saying so once: `agent.detector.generation`."""
        overridden = neutralize(self.model.generation_config)
        if overridden:
            log.info("model %s: generation settings that would fight the <OD> grammar are overridden: %s",
                     self.source, describe(overridden))
        return overridden

    def prompt_ids_for(self, prompt: str) -> torch.Tensor:
        """The processor's ids for `prompt` (the task token expanded, image tokens inserted), on the device."""
        size = self.image_size
        dummy = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        inputs = self.processor(text=[prompt], images=[dummy], return_tensors="pt")
        return inputs["input_ids"].to(self.device)

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.processor.image_processor.size
        return int(size["width"]), int(size["height"])

    # ----- inference ------------------------------------------------------------------------------------------------
    def preprocess(self, frames: Sequence[npt.NDArray[np.uint8]]) -> torch.Tensor:
        """BGR frames -> normalised pixel tensor (resize with bicubic, like the CLIP image processor)."""
        pixels = torch.from_numpy(preprocess_frames(frames, self.processor.image_processor, self.image_size))
        return pixels.to(self.device, self.dtype)

    def generate(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy constrained generation -> (generated tokens B x T, constrained log-probs T x B x V)."""
        processors = []
        if self.options.constrained:
            processors.append(OdLogitsProcessor(
                self.grammar, self.options.max_new_tokens, self.options.min_boxes, self.options.max_boxes))
        return self.generate_from(self._prompt_ids, pixel_values, processors)

    def generate_from(self, prompt_ids: torch.Tensor, pixel_values: torch.Tensor, processors: list[Any]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """HF greedy `generate` from a prompt (1 x P ids) for every frame of the batch, under `processors`."""
        batch = pixel_values.shape[0]
        input_ids = prompt_ids.expand(batch, -1)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values=pixel_values,
                logits_processor=processors, max_new_tokens=self.options.max_new_tokens, do_sample=False,
                num_beams=1, output_scores=True, return_dict_in_generate=True,
            )
        log_probs = constrained_log_probs(torch.stack(out.scores))
        return out.sequences[:, 1:], log_probs  # drop the decoder-start token

    def run_task(self, frames: Sequence[npt.NDArray[np.uint8]], task: Task, phrase: str | None = None
                 ) -> list[list[Region]]:
        """A region task (dense captions, phrase grounding) on BGR frames: `agent/detector/task_runner.py`."""
        from agent.detector.task_runner import run_region_task

        return run_region_task(self, frames, task, phrase)

    def detect(self, frames: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        if not frames:
            return []
        results, self.last_timing = timed_detect(frames, self.preprocess, self.generate, self._to_detections)
        return results

    def _to_detections(self, tokens: list[int], log_probs: torch.Tensor, frame: npt.NDArray[np.uint8]) -> Detections:
        size = (int(frame.shape[1]), int(frame.shape[0]))
        if not self.options.constrained:
            text = self.processor.tokenizer.decode(tokens, skip_special_tokens=False)
            return from_loc_text(text, self.class_names, size, strict=False)
        return scored_detections(tokens, log_probs, self.grammar, self.options.loc_window, self.score_columns, size)


def preprocess_frames(
    frames: Sequence[npt.NDArray[np.uint8]], image_processor: Any, size: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """BGR frames -> normalised N x 3 x H x W float32 (bicubic resize like the CLIP processor); `size` = (w, h)."""
    mean = np.asarray(image_processor.image_mean, dtype=np.float32)
    std = np.asarray(image_processor.image_std, dtype=np.float32)
    batch = []
    for i, frame in enumerate(frames):
        rgb = cv2.cvtColor(check_frame(frame, i), cv2.COLOR_BGR2RGB)
        resized = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
        batch.append((resized.astype(np.float32) * float(image_processor.rescale_factor) - mean) / std)
    return np.ascontiguousarray(np.stack(batch).transpose(0, 3, 1, 2))


def merge_adapter(model: Any, adapter: Path, base_source: str) -> Any:
    """Load a PEFT LoRA adapter (safetensors only) and merge it into the base weights for inference."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise DetectorError(f"adapter directory {adapter} has no adapter_config.json")
    if not (adapter / "adapter_model.safetensors").is_file():
        raise DetectorError(f"adapter {adapter} has no adapter_model.safetensors (only safetensors are loaded)")
    from safetensors import SafetensorError

    try:
        untie_head_for_lora(model, adapter)
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except SafetensorError as exc:  # garbage or truncated weights file: refuse it like any other bad adapter
        raise DetectorError(f"adapter {adapter}: adapter_model.safetensors is not readable safetensors: {exc}") from exc
    except (RuntimeError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DetectorError(f"adapter {adapter} does not fit base model {base_source}: {first_line}") from exc
    return merged


def untie_head_for_lora(model: Any, adapter: Path) -> None:
    """An adapter with an lm_head LoRA (maestro's and autodistill's have one) on a model whose lm_head is tied to the
    input embeddings: give lm_head its own copy first. Merging into the tied tensor would change the embeddings too,
    which the LoRA never did while it was trained (it acted on the head's output only)."""
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        names = handle.keys()  # a safe_open handle is not iterable itself
    if not any(".lm_head." in name for name in names):
        return
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head.weight is embeddings.weight:
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
        model.config.tie_word_embeddings = False


def model_version(source: str, adapter: str | Path | None) -> str:
    """`base[+adapter]`: the identity results carry (the adapter's store version, else its training run id)."""
    base = Path(source).name if Path(source).is_dir() else source
    return base if adapter is None else f"{base}+{adapter_label(adapter)}"
