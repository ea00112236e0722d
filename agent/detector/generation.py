"""Generation settings a checkpoint may carry that would fight the `<OD>` grammar, and their neutral values.

The published Florence-2 checkpoints ask for 3 beams, `no_repeat_ngram_size` 3, forced BOS 0 and forced EOS 2
(generation_config.json). The detector decodes greedily under `OdLogitsProcessor` and scores boxes on that one
constrained distribution, so each of these would change what the grammar allows or how it is searched:

- beams (and beam groups, diversity, early stopping): several hypotheses instead of the one greedy path the scores
  are computed on;
- `no_repeat_ngram_size`: bans repeated trigrams, and `<loc_N>` runs repeat (two boxes at the same place, or
  x1 = x2): it can leave the grammar no allowed token at all;
- forced BOS/EOS: the grammar already writes `<s>` first and closes with `</s>` within the budget; a forced EOS on
  the last step masks the pad a finished row must write;
- min length, repetition penalties, suppressed / bad words, sequence bias: they move or ban tokens the grammar
  allows, so the scores would no longer be the grammar's.

`neutralize` sets each to its neutral value on the model's own `generation_config` (a `None` passed to `generate`
would mean "use the model's value") and returns what it changed, for one log line. The fast backends (torch-fast,
onnx) never read a generation config: their greedy loop applies only the grammar.
"""

from __future__ import annotations

from typing import Any

# setting -> neutral value (what transformers does when the setting is absent)
GRAMMAR_NEUTRAL: dict[str, Any] = {
    "num_beams": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "early_stopping": False,
    "do_sample": False,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "min_length": 0,
    "min_new_tokens": None,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "guidance_scale": None,
}


def conflicting_settings(generation_config: Any) -> dict[str, Any]:
    """Settings of `generation_config` that differ from their neutral value: name -> the checkpoint's value."""
    found = {}
    for name, neutral in GRAMMAR_NEUTRAL.items():
        value = getattr(generation_config, name, None)
        if value is not None and value != neutral:
            found[name] = value
    return found


def neutralize(generation_config: Any) -> dict[str, Any]:
    """Set every conflicting setting to its neutral value in place; returns name -> the value it had."""
    found = conflicting_settings(generation_config)
    for name in found:
        setattr(generation_config, name, GRAMMAR_NEUTRAL[name])
    return found


def describe(overridden: dict[str, Any]) -> str:
    """`num_beams 3 -> 1, forced_eos_token_id 2 -> None`: the log line's list."""
    return ", ".join(f"{name} {value!r} -> {GRAMMAR_NEUTRAL[name]!r}" for name, value in overridden.items())
