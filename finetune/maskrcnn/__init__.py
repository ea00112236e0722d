"""The `maskrcnn` family, training side: tiny model, fine-tuning, ONNX export (registered in finetune/families.py)."""
