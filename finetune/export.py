"""ONNX export of a Florence-2 `<OD>` detector (LoRA adapter merged first), as three graphs like the onnx-community
split, for the `onnx` backend (`agent.detector.onnx`):

- `vision_encoder.onnx`:  pixel_values (B x 3 x H x W) -> image_features (B x N x D)
- `encoder_model.onnx`:   image_features (+ the `<OD>` prompt text, embedded at export) -> the text encoder's
                          output projected to every decoder layer's cross-attention K and V (layers x B x heads x S x d)
- `decoder_model_with_past.onnx`: ids (B; columns of the grammar's vocabulary slice), position (1), past K/V
                          (layers x B x heads x t x d), cross K/V -> logits over the slice (B x A), present K/V (t + 1)

`lm_head` and the decoder's input embeddings are sliced to the class list's grammar at export, so an export belongs
to one class list (recorded in `export.json` with everything the runtime needs). Precisions: fp32; fp16 (weights
and compute in FP16, FP32 inputs and outputs); int8 (ORT dynamic quantisation of the MatMul/Gemm weights: INT8
weights per channel, activations quantised on the fly per tensor; convolutions stay FP32).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent.detector.fast import FastDecoder
from agent.modeldir import write_class_names

PRECISIONS = ("fp32", "fp16", "int8")
GRAPHS = ("vision_encoder", "encoder_model", "decoder_model_with_past")
MANIFEST = "export.json"
OPSET = 17


class ExportError(ValueError):
    """A bad export request (names the value at fault)."""


@dataclass(frozen=True)
class ExportManifest:
    """What the ONNX runtime needs besides the graphs; written as `export.json`."""

    precision: str
    version: str
    class_names: list[str]
    allowed_ids: list[int]
    decoder_start_id: int
    image_tokens: int
    text_ids: list[int]
    layers: int
    heads: int
    head_dim: int
    max_positions: int
    image_size: list[int]

    def write(self, out_dir: Path) -> None:
        (out_dir / MANIFEST).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, out_dir: Path) -> ExportManifest:
        return cls(**json.loads((out_dir / MANIFEST).read_text()))


class VisionEncoder(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.model.get_image_features(pixel_values).pooler_output


class TextEncoder(nn.Module):
    """Image features -> per-layer cross-attention K/V. The `<image>` tokens are the prompt's prefix; the fixed
    `<OD>` text after them is embedded at export (a constant), so the graph carries no 51k-row embedding table."""

    text_embeds: torch.Tensor

    def __init__(self, model: Any, decoder: FastDecoder, text_ids: list[int]) -> None:
        super().__init__()
        with torch.no_grad():
            self.register_buffer("text_embeds", model.get_input_embeddings()(torch.tensor([text_ids])).clone())
        self.encoder = model.model.language_model.encoder
        self.decoder = decoder

    def forward(self, image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.text_embeds.expand(image_features.shape[0], -1, -1)
        embeds = torch.cat([image_features.to(text.dtype), text], dim=1)
        hidden = self.encoder(inputs_embeds=embeds).last_hidden_state
        return self.decoder.cross_kv(hidden)


class DecoderWithPast(nn.Module):
    def __init__(self, decoder: FastDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, ids: torch.Tensor, position: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor,
                cross_k: torch.Tensor, cross_v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.decoder.step_with_past(ids, position[0], past_k, past_v, cross_k, cross_v)


def split_prompt(prompt_ids: torch.Tensor, image_token_id: int) -> tuple[int, list[int]]:
    """(number of leading `<image>` tokens, the text ids after them); refuses prompts the encoder graph cannot take."""
    ids = prompt_ids[0].tolist()
    count = next((i for i, tok in enumerate(ids) if tok != image_token_id), len(ids))
    if count == 0 or image_token_id in ids[count:]:
        raise ExportError(f"the prompt's <image> tokens (id {image_token_id}) are not one leading run: {ids[:8]}...")
    return count, ids[count:]


def load_for_export(model: str | Path, adapter: str | Path | None, class_names: Sequence[str] | None) -> Any:
    """The FP32 CPU detector (LoRA merged): one loading path for every backend."""
    from agent.detector.florence2 import DetectorOptions, Florence2Detector

    return Florence2Detector(model, adapter, class_names, DetectorOptions(device="cpu"))


def export_onnx(
    model: str | Path, out_dir: Path, adapter: str | Path | None = None, precision: str = "fp32",
    class_names: Sequence[str] | None = None,
) -> Path:
    """Export the three graphs at `precision` into `out_dir` with the processor, classes and `export.json`."""
    return export_onnx_precisions(model, {precision: Path(out_dir)}, adapter, class_names)[precision]


def export_onnx_precisions(
    model: str | Path, out_dirs: Mapping[str, Path], adapter: str | Path | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Path]:
    """One load and one FP32 trace, then each precision of `out_dirs` (precision -> directory) written from it."""
    unknown = [p for p in out_dirs if p not in PRECISIONS]
    if unknown:
        raise ExportError(f"unknown precision {unknown[0]!r}; choose one of {', '.join(PRECISIONS)}")
    detector = load_for_export(model, adapter, class_names)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_dir = Path(tmp)
        manifest = export_fp32_graphs(detector, fp32_dir)
        for precision, out_dir in out_dirs.items():
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            for graph in GRAPHS:
                convert_graph(fp32_dir / f"{graph}.onnx", Path(out_dir) / f"{graph}.onnx", precision)
            detector.processor.save_pretrained(out_dir)
            write_class_names(out_dir, detector.class_names)
            ExportManifest(**{**asdict(manifest), "precision": precision}).write(Path(out_dir))
    return {precision: Path(out_dir) for precision, out_dir in out_dirs.items()}


def export_fp32_graphs(detector: Any, out_dir: Path) -> ExportManifest:
    """Trace the three graphs in FP32 on CPU; returns the manifest (precision fp32)."""
    model = detector.model.float().eval()
    image_tokens, text_ids = split_prompt(detector._prompt_ids, int(model.config.image_token_id))
    decoder = FastDecoder(model, detector.grammar.allowed_ids).eval()
    decoder.slice_embeddings(detector.grammar.allowed_ids)
    width, height = detector.image_size
    text_encoder = TextEncoder(model, decoder, text_ids)
    with torch.inference_mode():
        pixels = torch.zeros(1, 3, height, width)
        features = VisionEncoder(model)(pixels)
        cross_k, cross_v = text_encoder(features)
    _export(VisionEncoder(model), (pixels,), out_dir / "vision_encoder.onnx", ["pixel_values"], ["image_features"],
            {"pixel_values": {0: "batch"}, "image_features": {0: "batch"}})
    _export(text_encoder, (features,), out_dir / "encoder_model.onnx", ["image_features"], ["cross_k", "cross_v"],
            {"image_features": {0: "batch"}, "cross_k": {1: "batch", 3: "source"},
             "cross_v": {1: "batch", 3: "source"}})
    _export_decoder(decoder, cross_k, cross_v, out_dir / "decoder_model_with_past.onnx")
    return ExportManifest(
        precision="fp32", version=detector.version, class_names=list(detector.class_names),
        allowed_ids=detector.grammar.allowed_ids.tolist(),
        decoder_start_id=int(model.config.text_config.decoder_start_token_id), image_tokens=image_tokens,
        text_ids=text_ids, layers=len(decoder.layers), heads=decoder.heads, head_dim=decoder.head_dim,
        max_positions=decoder.max_positions, image_size=[width, height],
    )


def _export_decoder(decoder: FastDecoder, cross_k: torch.Tensor, cross_v: torch.Tensor, path: Path) -> None:
    past = cross_k.new_zeros(cross_k.shape[0], 1, cross_k.shape[2], 3, cross_k.shape[4])
    args = (torch.tensor([5]), torch.tensor([3]), past, past.clone(), cross_k, cross_v)  # ids: slice columns
    kv_axes = {1: "batch", 3: "past"}
    _export(DecoderWithPast(decoder), args, path, ["ids", "position", "past_k", "past_v", "cross_k", "cross_v"],
            ["logits", "present_k", "present_v"],
            {"ids": {0: "batch"}, "past_k": kv_axes, "past_v": kv_axes, "cross_k": {1: "batch", 3: "source"},
             "cross_v": {1: "batch", 3: "source"}, "logits": {0: "batch"}, "present_k": {1: "batch", 3: "present"},
             "present_v": {1: "batch", 3: "present"}})


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], outputs: list[str],
            dynamic_axes: dict[str, dict[int, str]]) -> None:
    # The TorchScript exporter: the dynamo one needs onnxscript, which the daemon's targets do not ship.
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)


def convert_graph(src: Path, dst: Path, precision: str) -> None:
    """Copy (fp32), convert to FP16 with FP32 I/O, or dynamically quantise to INT8."""
    if precision == "fp32":
        shutil.copyfile(src, dst)
    elif precision == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Only weight MatMuls (constant B): quantising attention's activation x activation products costs accuracy
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         per_channel=True, extra_options={"MatMulConstBOnly": True})
