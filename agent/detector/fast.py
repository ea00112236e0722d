"""`torch-fast` backend: the same Florence-2 weights as `torch-eager`, decoded without HF `generate`.

- the vision tower and the text encoder run once per batch;
- the decoder runs one step at a time with a preallocated self-attention KV cache (written in place, attended with
  a position mask so every step has the same shapes) and cross-attention K/V computed once from the encoder output;
- `lm_head` is sliced to the tokens the `<OD>` grammar can ever emit (~1k of ~51k rows: most of the per-token
  weight reads of the base model), and the grammar masks the sliced logits (`agent.detector.greedy`);
- the loop exits as soon as every row has written `</s>`;
- on CUDA the model runs in FP16 and the decode step is captured once per batch size as a CUDA graph, so a token
  costs one graph launch instead of hundreds of kernel launches.

Outputs (tokens, boxes, scores) equal `torch-eager`'s under the same constraints: `tests/agent/detector/test_fast.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from agent.detections import Detections
from agent.detector.base import DetectorError
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from agent.detector.greedy import DecodeLimits, SlicedVocab, greedy_decode
from agent.detector.quantize import QUANTIZE_MODES, QUANTIZERS, Int8Linear

log = logging.getLogger(__name__)


class FastDecoder(nn.Module):
    """One step of Florence-2's (BART, post-LN) decoder over the model's own modules, `lm_head` sliced.

    `forward` = static-cache step (in-place cache write + masked attention over the whole cache: fixed shapes, so it
    can be captured as a CUDA graph); `step_with_past` = the concat form the ONNX decoder-with-past graph uses.
    """

    lm_weight: torch.Tensor  # lm_head rows of the grammar's vocabulary (A x D)

    def __init__(self, model: Any, allowed_ids: torch.Tensor) -> None:
        super().__init__()
        decoder = model.model.language_model.decoder
        self.embed_tokens = decoder.embed_tokens
        self.embed_positions = decoder.embed_positions
        self.layernorm_embedding = decoder.layernorm_embedding
        self.layers = decoder.layers
        first = decoder.layers[0].self_attn
        self.heads, self.head_dim = first.num_heads, first.head_dim
        self.max_positions = int(decoder.embed_positions.num_embeddings - decoder.embed_positions.offset)
        weight = model.get_output_embeddings().weight
        self.register_buffer("lm_weight", weight[allowed_ids.to(weight.device)].detach().clone(), persistent=False)
        self.token_table: torch.Tensor | None = None  # set by `slice_embeddings`: ids are then slice columns
        self.lm_int8: Int8Linear | None = None  # set by `quantize_lm_head` (model.quantize: int8-weight)

    def slice_embeddings(self, allowed_ids: torch.Tensor) -> None:
        """Keep only the input embeddings of the grammar's tokens (the only ones ever fed back): `forward` then
        takes slice columns instead of vocabulary ids. The ONNX export uses it to drop the 51k-row table."""
        weight = self.embed_tokens.weight
        self.token_table = (weight[allowed_ids.to(weight.device)] * self.embed_tokens.embed_scale).detach().clone()

    def quantize_lm_head(self) -> None:
        """Hold the sliced lm_head as int8 rows (`agent.detector.quantize`); the float rows are dropped."""
        self.lm_int8 = Int8Linear(self.lm_weight)
        self.lm_weight = self.lm_weight.new_empty((0, self.lm_weight.shape[1]))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Sliced logits B x A of the step's last hidden state B x D."""
        return hidden @ self.lm_weight.T if self.lm_int8 is None else self.lm_int8(hidden)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of one query position; on CPU as two small matmuls (the fused CPU SDPA kernel is slower at
        query length 1), elsewhere fused."""
        if q.device.type != "cpu":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        scores = (q * self.head_dim**-0.5) @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        return torch.softmax(scores, dim=-1) @ v

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def cross_kv(self, encoder_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention K and V of every layer, computed once per batch: (layers, B, heads, S, head_dim) each."""
        keys = [self._split(layer.encoder_attn.k_proj(encoder_hidden)) for layer in self.layers]
        values = [self._split(layer.encoder_attn.v_proj(encoder_hidden)) for layer in self.layers]
        return torch.stack(keys), torch.stack(values)

    def new_cache(self, batch: int, length: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (len(self.layers), batch, self.heads, length, self.head_dim)
        return like.new_zeros(shape), like.new_zeros(shape)

    def _embed(self, ids: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        offset = self.embed_positions.offset
        positions = self.embed_positions.weight.index_select(0, position.reshape(1) + offset)
        ids = ids.reshape(-1, 1)
        tokens = self.embed_tokens(ids) if self.token_table is None else self.token_table[ids]
        hidden = tokens + positions
        return self.layernorm_embedding(hidden)

    def _block(self, layer: Any, hidden: torch.Tensor, self_out: torch.Tensor, cross_k: torch.Tensor,
               cross_v: torch.Tensor) -> torch.Tensor:
        """The rest of a decoder layer once self-attention's output is known (post-LN residual blocks)."""
        hidden = layer.self_attn_layer_norm(hidden + layer.self_attn.out_proj(self_out))
        q = self._split(layer.encoder_attn.q_proj(hidden))
        cross = self._attend(q, cross_k, cross_v).transpose(1, 2).reshape(hidden.shape)
        hidden = layer.encoder_attn_layer_norm(hidden + layer.encoder_attn.out_proj(cross))
        ffn = layer.fc2(layer.activation_fn(layer.fc1(hidden)))
        return layer.final_layer_norm(hidden + ffn)

    def forward(self, ids: torch.Tensor, position: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor,
                cross_k: torch.Tensor, cross_v: torch.Tensor) -> torch.Tensor:
        """Static-cache step: writes this token's K/V at `position` (0-d long tensor) -> sliced logits B x A."""
        hidden = self._embed(ids, position)
        slots = torch.arange(cache_k.shape[3], device=ids.device)
        mask = torch.zeros(slots.shape, dtype=hidden.dtype, device=ids.device)
        mask = mask.masked_fill(slots > position, float("-inf")).view(1, 1, 1, -1)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            cache_k[i].index_copy_(2, position.reshape(1), self._split(attn.k_proj(hidden)))
            cache_v[i].index_copy_(2, position.reshape(1), self._split(attn.v_proj(hidden)))
            q = self._split(attn.q_proj(hidden))
            out = self._attend(q, cache_k[i], cache_v[i], mask)
            hidden = self._block(layer, hidden, out.transpose(1, 2).reshape(hidden.shape), cross_k[i], cross_v[i])
        return self._logits(hidden[:, 0])

    def step_with_past(self, ids: torch.Tensor, position: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor,
                       cross_k: torch.Tensor, cross_v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Concat-cache step (past: layers x B x heads x t x head_dim) -> (sliced logits, present K, present V)."""
        hidden = self._embed(ids, position)
        present_k, present_v = [], []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            keys = torch.cat([past_k[i], self._split(attn.k_proj(hidden))], dim=2)
            values = torch.cat([past_v[i], self._split(attn.v_proj(hidden))], dim=2)
            present_k.append(keys)
            present_v.append(values)
            out = self._attend(self._split(attn.q_proj(hidden)), keys, values)
            hidden = self._block(layer, hidden, out.transpose(1, 2).reshape(hidden.shape), cross_k[i], cross_v[i])
        return self._logits(hidden[:, 0]), torch.stack(present_k), torch.stack(present_v)


def encode_image_and_prompt(model: Any, prompt_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
    """Vision tower + projector, image features placed at the prompt's `<image>` tokens, text encoder -> B x S x D."""
    image_features = model.model.get_image_features(pixel_values).pooler_output
    input_ids = prompt_ids.expand(pixel_values.shape[0], -1)
    embeds = model.get_input_embeddings()(input_ids)
    image_mask = (input_ids == model.config.image_token_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(image_mask, image_features.to(embeds.dtype))
    encoder = model.model.language_model.encoder
    return encoder(inputs_embeds=embeds, attention_mask=torch.ones_like(input_ids)).last_hidden_state


@dataclass
class _GraphedStep:
    """A CUDA graph of `FastDecoder.forward` for one batch size, with the static buffers it reads and writes."""

    graph: Any
    ids: torch.Tensor
    position: torch.Tensor
    cache_k: torch.Tensor
    cache_v: torch.Tensor
    cross_k: torch.Tensor
    cross_v: torch.Tensor
    logits: torch.Tensor = field(default_factory=lambda: torch.empty(0))


class FastFlorence2Detector(Florence2Detector):
    """`torch-fast`: same loading, preprocessing and scoring as `Florence2Detector`, own decode loop."""

    backend = "torch-fast"
    quantize_modes = QUANTIZE_MODES

    def __init__(self, model: str | Path, adapter: str | Path | None = None,
                 class_names: Sequence[str] | None = None, options: DetectorOptions | None = None,
                 cuda_graphs: bool = True) -> None:
        super().__init__(model, adapter, class_names, options)
        if not self.options.constrained:
            raise DetectorError("backend 'torch-fast' decodes on the grammar's vocabulary: constrained must be True")
        self.limits = DecodeLimits(self.options.max_new_tokens, self.options.min_boxes, self.options.max_boxes)
        self.vocab = SlicedVocab(self.grammar)
        self.score_columns = self.vocab.columns_tensor
        self.decoder = FastDecoder(self.model, self.grammar.allowed_ids).eval()
        quantizer = QUANTIZERS[self.options.quantize]
        self.quantized: dict[str, Any] = quantizer(self.model, self.decoder) if quantizer else {"mode": "none"}
        if self.options.max_new_tokens + 1 > self.decoder.max_positions:
            raise DetectorError(f"max_new_tokens {self.options.max_new_tokens} exceeds the decoder's "
                                f"{self.decoder.max_positions} positions")
        self.use_cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[int, _GraphedStep] = {}
        self._decoder_start = int(self.model.config.text_config.decoder_start_token_id)
        self.last_decode: dict[str, float] = {}

    def generate(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy constrained decode -> (tokens B x T, constrained log-probs T x B x A over the sliced vocab)."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            encoded = encode_image_and_prompt(self.model, self._prompt_ids, pixel_values)
            cross_k, cross_v = self.decoder.cross_kv(encoded)
            self._sync()
            t1 = time.perf_counter()
            step = self._step_fn(pixel_values.shape[0], cross_k, cross_v)
            tokens, log_probs = greedy_decode(step, self.grammar, self.vocab, pixel_values.shape[0], self.limits,
                                              self._decoder_start)
        t2 = time.perf_counter()
        self.last_decode = {"encode_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3, "steps": tokens.shape[1]}
        return torch.from_numpy(tokens), torch.from_numpy(log_probs)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _step_fn(self, batch: int, cross_k: torch.Tensor, cross_v: torch.Tensor) -> Any:
        if self.use_cuda_graphs:
            try:
                return self._graphed_step_fn(batch, cross_k, cross_v)
            except RuntimeError as exc:  # capture is best effort: fall back to the eager step, same results
                log.warning("CUDA graph capture failed (%s); decoding without graphs", exc)
                self.use_cuda_graphs = False
        cache_k, cache_v = self.decoder.new_cache(batch, self.limits.max_new_tokens, cross_k)

        def step(previous: npt.NDArray[np.int64], position: int) -> npt.NDArray[np.float32]:
            ids = torch.from_numpy(previous).to(self.device)
            pos = torch.tensor(position, device=self.device)
            logits = self.decoder(ids, pos, cache_k, cache_v, cross_k, cross_v)
            return logits.float().cpu().numpy()

        return step

    def _graphed_step_fn(self, batch: int, cross_k: torch.Tensor, cross_v: torch.Tensor) -> Any:
        graphed = self._graphs.get(batch)
        if graphed is None or graphed.cross_k.shape != cross_k.shape:
            graphed = self._capture(batch, cross_k, cross_v)
            self._graphs[batch] = graphed
        graphed.cross_k.copy_(cross_k)
        graphed.cross_v.copy_(cross_v)
        graphed.cache_k.zero_()
        graphed.cache_v.zero_()

        def step(previous: npt.NDArray[np.int64], position: int) -> npt.NDArray[np.float32]:
            graphed.ids.copy_(torch.from_numpy(previous), non_blocking=True)
            graphed.position.fill_(position)
            graphed.graph.replay()
            return graphed.logits.float().cpu().numpy()

        return step

    def _capture(self, batch: int, cross_k: torch.Tensor, cross_v: torch.Tensor) -> _GraphedStep:
        """Warm up on a side stream, then capture one decode step on static buffers (GPU only)."""
        cache_k, cache_v = self.decoder.new_cache(batch, self.limits.max_new_tokens, cross_k)
        buffers = _GraphedStep(torch.cuda.CUDAGraph(), torch.zeros(batch, dtype=torch.long, device=self.device),
                               torch.zeros((), dtype=torch.long, device=self.device), cache_k, cache_v,
                               cross_k.clone(), cross_v.clone())
        args = (buffers.ids, buffers.position, cache_k, cache_v, buffers.cross_k, buffers.cross_v)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.decoder(*args)
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(buffers.graph):
            buffers.logits = self.decoder(*args)
        return buffers

    def detect(self, frames: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        results = super().detect(frames)
        if frames:
            self.last_timing.update(self.last_decode)
        return results
