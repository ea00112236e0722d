"""The paligemma2 family on the training side: the tiny model (`tiny.py`), LoRA fine-tuning (`batches.py`,
`trainer.py`), and `kit.py`, the light entry points finetune/families.py registers."""
