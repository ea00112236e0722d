"""`torch-fast` for the paligemma2 family: the same weights as `torch-eager`, decoded without HF `generate`.

- the image and the prompt run once per batch (the prefix, attended bidirectionally) and fill a KV cache;
- then one token a step through the language model, reading only the hidden state of the newest token;
- `lm_head` is sliced to the tokens the detection grammar can ever emit (~1.1k of PaliGemma 2's 257k rows: the
  largest single matrix a decode step would otherwise read), Gemma 2's final logit soft-capping applied on the
  slice, and the grammar masks the sliced logits in the shared greedy loop (`agent.detector.greedy`);
- the loop exits as soon as every row has written `<eos>`.

No CUDA graphs here (Florence-2's torch-fast has them): the step goes through transformers' own cache. Outputs
(tokens, boxes, scores) equal `torch-eager`'s under the same constraints:
tests/agent/detector/paligemma/test_detector.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from agent.detector.base import DetectorError
from agent.detector.florence2 import DetectorOptions
from agent.detector.greedy import DecodeLimits, SlicedVocab, greedy_decode
from agent.detector.paligemma.detector import PaliGemma2Detector


class FastPaliGemma2Detector(PaliGemma2Detector):
    """`torch-fast`: loading, preprocessing and scoring of `PaliGemma2Detector`, its own decode loop."""

    def __init__(self, model: str | Path, adapter: str | Path | None = None,
                 class_names: Sequence[str] | None = None, options: DetectorOptions | None = None) -> None:
        super().__init__(model, adapter, class_names, options)
        if not self.options.constrained:
            raise DetectorError("backend 'torch-fast' decodes on the grammar's vocabulary: constrained must be True")
        self.limits = DecodeLimits(self.options.max_new_tokens, self.options.min_boxes, self.options.max_boxes)
        self.vocab = SlicedVocab(self.grammar)
        self.score_columns = self.vocab.columns_tensor
        weight = self.model.get_output_embeddings().weight
        self.lm_weight = weight[self.grammar.allowed_ids.to(weight.device)].detach().clone()
        self.softcap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)

    def generate(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy constrained decode -> (tokens B x T, constrained log-probs T x B x A over the sliced vocab)."""
        batch = pixel_values.shape[0]
        with torch.inference_mode():
            step = self._step_fn(pixel_values)
            tokens, log_probs = greedy_decode(step, self.grammar, self.vocab, batch, self.limits, self.grammar.pad_id)
        return torch.from_numpy(tokens), torch.from_numpy(log_probs)

    def _step_fn(self, pixel_values: torch.Tensor) -> Any:
        from transformers import DynamicCache

        prompt = self._prompt_ids.expand(pixel_values.shape[0], -1)
        cache = DynamicCache(config=self.model.config)

        def step(previous: npt.NDArray[np.int64], position: int) -> npt.NDArray[np.float32]:
            if position == 0:  # the prefix: image tokens and prompt, bidirectional (token type 0)
                out = self.model.model(input_ids=prompt, pixel_values=pixel_values, cache=cache, use_cache=True,
                                       token_type_ids=torch.zeros_like(prompt))
            else:
                ids = torch.from_numpy(previous).to(self.device)[:, None]
                out = self.model.model(input_ids=ids, cache=cache, use_cache=True)
            return self._sliced_logits(out.last_hidden_state[:, -1]).float().cpu().numpy()

        return step

    def _sliced_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden @ self.lm_weight.T
        if self.softcap is not None:  # Gemma 2 caps its logits; the grammar's slice gets the same cap
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits
