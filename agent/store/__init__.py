"""Model store under `{state_dir}/models/`: the base model reference, versioned LoRA adapters, current/previous.

Layout::

    models/
      base.json              {"path": ..., "identity": "sha256:..."}  which base model the adapters belong to
      adapters/v0001/        adapter_config.json, adapter_model.safetensors, manifest.json
      adapters/v0002/ ...
      adapters/v0003/onnx/   on an onnx line: the merged export the daemon serves (agent/store/exports.py)
      pointers.json          {"current": "v0002", "previous": "v0001", "switched_at": ...}  (the truth)
      current -> adapters/v0002   symlinks mirroring pointers.json, so a config can name `models/current`
      previous -> adapters/v0001

Modules: `files` (hashing, safetensors-only checks, atomic JSON), `manifest` (the one manifest type, writer and
version scheme, shared with the trainer), `model_store` (`ModelStore`: add, verify, promote, rollback), `exports`
(ONNX exports stored with a version).
"""
