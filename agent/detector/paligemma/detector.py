"""`torch-eager` for the paligemma2 family: transformers' `PaliGemmaForConditionalGeneration` with HF `generate`.

Loads the model and its `PaliGemmaProcessor` from a `save_pretrained` directory (safetensors only), optionally merges
a PEFT LoRA adapter, asks `detect a ; b ; c` for the class list and decodes under `PaliGemmaGrammar`, so every
answer parses; each box is scored from the constrained token probabilities (agent/detector/paligemma/scoring.py).
bf16 on CUDA (Gemma 2 overflows in fp16), fp32 on CPU. Loading, adapters, preprocessing, batching and timing are
Florence-2's (`Florence2Detector`, which this class specialises); the prompt, the grammar and the answer differ.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from agent.detections import Detections
from agent.detector.base import DetectorError
from agent.detector.constraints import GrammarError, OdLogitsProcessor
from agent.detector.florence2 import Florence2Detector
from agent.detector.paligemma.dialect import detect_prompt, parse_answer
from agent.detector.paligemma.grammar import PaliGemmaGrammar
from agent.detector.paligemma.scoring import scored_detections
from agent.detector.scoring import constrained_log_probs

MODEL_TYPE = "paligemma"  # config.json model_type of PaliGemma and PaliGemma 2 checkpoints


class PaliGemma2Detector(Florence2Detector):
    """Batched PaliGemma (2) detector. `detect(frames)` -> one `Detections` per BGR frame."""

    model_type, title = MODEL_TYPE, "PaliGemma 2"
    model_class = "PaliGemmaForConditionalGeneration"
    cuda_dtype = torch.bfloat16

    def _make_grammar(self) -> PaliGemmaGrammar:
        try:
            return PaliGemmaGrammar(self.processor.tokenizer, self.class_names)
        except GrammarError as exc:
            raise DetectorError(f"{self.source}: {exc}") from exc

    def _build_prompt_ids(self) -> torch.Tensor:
        """Image tokens, `<bos>`, `detect a ; b ; c` and the newline, as the processor lays them out."""
        size = self.image_size
        dummy = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        prompt = self.processor.image_token + detect_prompt(self.class_names)  # the processor expands the token
        inputs = self.processor(text=[prompt], images=[dummy], return_tensors="pt")
        return inputs["input_ids"].to(self.device)

    def generate(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy constrained generation -> (generated tokens B x T, constrained log-probs T x B x V)."""
        batch, prompt_len = pixel_values.shape[0], self._prompt_ids.shape[1]
        input_ids = self._prompt_ids.expand(batch, -1)
        processors = []
        if self.options.constrained:
            processors.append(OdLogitsProcessor(self.grammar, self.options.max_new_tokens, self.options.min_boxes,
                                                self.options.max_boxes, prompt_len=prompt_len))
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                token_type_ids=torch.zeros_like(input_ids), pixel_values=pixel_values,
                logits_processor=processors, max_new_tokens=self.options.max_new_tokens, do_sample=False,
                num_beams=1, output_scores=True, return_dict_in_generate=True,
                eos_token_id=self.grammar.eos_id, pad_token_id=self.grammar.pad_id,
            )
        log_probs = constrained_log_probs(torch.stack(out.scores))
        return out.sequences[:, prompt_len:], log_probs

    def _to_detections(self, tokens: list[int], log_probs: torch.Tensor, frame: npt.NDArray[np.uint8]) -> Detections:
        size = (int(frame.shape[1]), int(frame.shape[0]))
        if not self.options.constrained:  # free text: parse it, or say which text did not parse
            text = self.processor.tokenizer.decode(tokens, skip_special_tokens=False)
            return parse_answer(text, self.class_names, size)
        return scored_detections(tokens, log_probs, self.grammar, self.options.loc_window, self.score_columns, size)
