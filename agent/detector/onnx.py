"""`onnx` backend: ONNX Runtime over the graphs `edge-inspect export onnx` writes (`finetune.export`).

Vision encoder and text encoder (which also emits every layer's cross-attention K/V) run once per batch; the
decoder-with-past graph runs once per token inside the shared constrained greedy loop (`agent.detector.greedy`),
with IO binding so the growing self-attention cache and the cross K/V stay as ORT values on the execution device
between steps. Providers: CUDA when a GPU is usable (TensorRT first when `EDGE_INSPECT_ORT_TENSORRT=1`), else CPU.

The daemon needs no torch model here: the export directory holds the graphs, the processor (tokenizer + image
settings), the class list and `export.json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from agent.detections import Detections
from agent.detector.base import DetectorError, timed_detect
from agent.detector.constraints import OdGrammar
from agent.detector.florence2 import DetectorOptions, check_quantize, pick_device, preprocess_frames
from agent.detector.greedy import DecodeLimits, SlicedVocab, greedy_decode
from agent.detector.scoring import scored_detections
from agent.detector.tasks import Region, Task, TaskUnsupported

GRAPHS = ("vision_encoder", "encoder_model", "decoder_model_with_past")
MANIFEST = "export.json"


def read_manifest(export_dir: Path) -> dict[str, Any]:
    """`export.json` of an export directory; a clear error when the directory is not an ONNX export."""
    path = export_dir / MANIFEST
    if not path.is_file():
        raise DetectorError(f"{export_dir} is not an ONNX export (no {MANIFEST}); create one with "
                            f"`edge-inspect export onnx --model DIR --out {export_dir}`")
    missing = [g for g in GRAPHS if not (export_dir / f"{g}.onnx").is_file()]
    if missing:
        raise DetectorError(f"ONNX export {export_dir} lacks {', '.join(f'{g}.onnx' for g in missing)}")
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def choose_providers(device: str) -> list[str]:
    """ORT execution providers for `device` (auto | cpu | cuda), best first."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if pick_device(device).type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise DetectorError(f"device {device!r} needs onnxruntime's CUDAExecutionProvider; available: {available}")
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if os.environ.get("EDGE_INSPECT_ORT_TENSORRT") == "1" and "TensorrtExecutionProvider" in available:
        wanted.insert(0, "TensorrtExecutionProvider")
    return wanted


class OnnxDetector:
    """Batched `<OD>` detector on ONNX Runtime; same grammar, decode loop and scoring as the torch backends."""

    def __init__(self, export_dir: str | Path, class_names: Sequence[str] | None = None,
                 options: DetectorOptions | None = None, threads: int | None = None) -> None:
        self.options = options or DetectorOptions()
        check_quantize("onnx", self.options.quantize, ("none",))
        self.export_dir = Path(export_dir).expanduser()
        if not self.export_dir.is_dir():
            raise DetectorError(f"ONNX export directory {self.export_dir} does not exist")
        self.manifest = read_manifest(self.export_dir)
        self.class_names = self._check_classes(class_names)
        self.version = str(self.manifest["version"])
        self.precision = str(self.manifest["precision"])
        self.providers = choose_providers(self.options.device)
        self.device_type = "cuda" if self.providers[0] != "CPUExecutionProvider" else "cpu"
        self.sessions = {g: self._session(g, threads) for g in GRAPHS}
        self._load_text_side()
        self.limits = DecodeLimits(self.options.max_new_tokens, self.options.min_boxes, self.options.max_boxes)
        self.last_timing: dict[str, float] = {}
        self.last_decode: dict[str, float] = {}

    def _check_classes(self, class_names: Sequence[str] | None) -> tuple[str, ...]:
        exported = tuple(self.manifest["class_names"])
        if class_names and tuple(class_names) != exported:
            raise DetectorError(f"ONNX export {self.export_dir} was made for classes {list(exported)}, "
                                f"not {list(class_names)}: export again with those classes")
        return exported

    def _session(self, graph: str, threads: int | None) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = self.export_dir / f"{graph}.onnx"
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
        except Exception as exc:  # ORT raises its own exception types (e.g. NOT_IMPLEMENTED for FP16 on CPU)
            raise DetectorError(f"ONNX Runtime cannot run {path} ({self.precision}) on {self.providers[0]}: "
                                f"{str(exc).splitlines()[0]}") from exc

    def _load_text_side(self) -> None:
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(str(self.export_dir))
        self.grammar = OdGrammar(self.processor.tokenizer, self.class_names)
        if self.grammar.allowed_ids.tolist() != list(self.manifest["allowed_ids"]):
            raise DetectorError(f"the tokenizer in {self.export_dir} does not match the exported vocabulary slice")
        self.vocab = SlicedVocab(self.grammar)
        width, height = self.manifest["image_size"]
        self.image_size = (int(width), int(height))
        if self.options.max_new_tokens + 1 > int(self.manifest["max_positions"]):
            raise DetectorError(f"max_new_tokens {self.options.max_new_tokens} exceeds the decoder's "
                                f"{self.manifest['max_positions']} positions")

    # ----- inference ------------------------------------------------------------------------------------------------
    def preprocess(self, frames: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        return preprocess_frames(frames, self.processor.image_processor, self.image_size)

    def encode(self, pixels: npt.NDArray[np.float32]) -> tuple[Any, Any]:
        """Vision encoder + text encoder -> cross K/V as ORT values on the execution device."""
        (features,) = self.sessions["vision_encoder"].run(None, {"pixel_values": pixels})
        binding = self.sessions["encoder_model"].io_binding()
        binding.bind_cpu_input("image_features", features)
        binding.bind_output("cross_k", self.device_type)
        binding.bind_output("cross_v", self.device_type)
        self.sessions["encoder_model"].run_with_iobinding(binding)
        cross_k, cross_v = binding.get_outputs()
        return cross_k, cross_v

    def generate(self, pixels: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Greedy constrained decode -> (tokens B x T, constrained log-probs T x B x A over the sliced vocab)."""
        t0 = time.perf_counter()
        cross_k, cross_v = self.encode(pixels)
        t1 = time.perf_counter()
        step = self._decoder_step(pixels.shape[0], cross_k, cross_v)
        tokens, log_probs = greedy_decode(step, self.grammar, self.vocab, pixels.shape[0], self.limits,
                                          int(self.manifest["decoder_start_id"]))
        t2 = time.perf_counter()
        self.last_decode = {"encode_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3, "steps": tokens.shape[1]}
        return tokens, log_probs

    def _decoder_step(self, batch: int, cross_k: Any, cross_v: Any) -> Any:
        import onnxruntime as ort

        session = self.sessions["decoder_model_with_past"]
        shape = (int(self.manifest["layers"]), batch, int(self.manifest["heads"]), 0, int(self.manifest["head_dim"]))
        empty = np.zeros(shape, dtype=np.float32)
        past = [ort.OrtValue.ortvalue_from_numpy(empty, self.device_type, 0) for _ in range(2)]

        def step(previous: npt.NDArray[np.int64], position: int) -> npt.NDArray[np.float32]:
            binding = session.io_binding()
            binding.bind_cpu_input("ids", self.vocab.columns[previous])  # the graph embeds slice columns
            binding.bind_cpu_input("position", np.array([position], dtype=np.int64))
            binding.bind_ortvalue_input("past_k", past[0])
            binding.bind_ortvalue_input("past_v", past[1])
            binding.bind_ortvalue_input("cross_k", cross_k)
            binding.bind_ortvalue_input("cross_v", cross_v)
            binding.bind_output("logits", "cpu")
            binding.bind_output("present_k", self.device_type)
            binding.bind_output("present_v", self.device_type)
            session.run_with_iobinding(binding)
            logits, past[0], past[1] = binding.get_outputs()
            result: npt.NDArray[np.float32] = logits.numpy()
            return result

        return step

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        if not frames:
            return []
        results, timing = timed_detect(frames, self.preprocess, self.generate, self._to_detections)
        self.last_timing = {**timing, **self.last_decode}
        return results

    def run_task(self, frames: Sequence[npt.NDArray[np.uint8]], task: Task, phrase: str | None = None
                 ) -> list[list[Region]]:
        """Region tasks are out of reach here: the export embeds the `<OD>` prompt and slices the decoder's output
        to the `<OD>` grammar's tokens (finetune/export.py)."""
        raise TaskUnsupported(f"backend 'onnx' runs <OD> only: the export {self.export_dir} embeds the <OD> prompt "
                              f"and decodes on the <OD> vocabulary, so it cannot run {task.name}; serve the model "
                              "on torch-eager or torch-fast for it")

    def _to_detections(self, tokens: list[int], log_probs: npt.NDArray[np.float32],
                       frame: npt.NDArray[np.uint8]) -> Detections:
        size = (int(frame.shape[1]), int(frame.shape[0]))
        return scored_detections(tokens, torch.from_numpy(np.ascontiguousarray(log_probs)), self.grammar,
                                 self.options.loc_window, self.vocab.columns_tensor, size)
