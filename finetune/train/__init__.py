"""LoRA fine-tuning of Florence-2 on a detection data set: the loop, its checkpoints and its run directory.

`run.train_lora(model_dir, train_set, out_dir, config, val_set=...)` wraps the base model with fresh LoRA adapters
(or the adapter it starts from, for incremental runs), trains with AdamW + warm-up/cosine schedule (or the
three-stage preset), validates every epoch (teacher-forced loss, and COCO mAP through `finetune.evaluate` on the
saved adapter), and writes:

- `out_dir/`: the adapter in PEFT layout (`adapter_config.json`, `adapter_model.safetensors`) + `manifest.json`
  (version, parent, base identity, data hash, metrics, thresholds, created_at), ready for `ModelStore.add_adapter`;
- `run_dir/` (default `<out_dir>.run`): `config.json`, `metrics.json`, `training.png` (loss and mAP curves) and
  `checkpoints/`, rewritten every `checkpoint_every` steps so that a killed run continues with `resume=True`.

Modules: `config` (settings, `TrainError`), `batches` (samples -> model inputs, pure per-step batch order),
`trainer` (model + optimizer + schedule + precision on a device), `checkpoints` (resumable state), `run` (the loop
and the run directory, `train_lora`), `adapter_io` (the adapter and its manifest), `task_mix` (which of the data's
tasks, `<OD>`, region captions, phrase grounding, each step trains). The training recipe, all off by
default (docs/training.md): `augment` (image augmentation, boxes kept consistent), `hard_examples` (hard-example
mining), `schedule` (warm-up + cosine, or the `three-stage` unfreezing preset).
"""
