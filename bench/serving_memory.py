"""Memory of serving a model (for docs/jetson.md's budget; not a test): each configuration in a fresh process that
imports the detector stack, loads the model on the backend and detects a few batches. Reported per configuration:
RSS after the imports, after loading (safetensors are memory-mapped: weights count once they are touched, so this
one understates), and the process's peak RSS (VmHWM) after detecting, the figure to budget with, split at the end
into anonymous memory and file pages (the mapped weights: clean, the kernel can drop them under pressure); the
weights' bytes; on CUDA also `torch.cuda.max_memory_allocated`.

    python -m bench.serving_memory                                  # demo + base (random), CPU, 2 threads
    python -m bench.serving_memory --configs demo:torch-fast:none:4 --device cuda

A configuration is MODEL:BACKEND:QUANTIZE:BATCH, MODEL `demo` (models/demo), `base` (Florence-2-base sizes with
random weights, built once into --work-dir) or a model directory.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGS = ("demo:torch-eager:none:4", "demo:torch-fast:none:4", "demo:torch-fast:int8-weight:4",
                   "base:torch-fast:none:1", "base:torch-fast:int8-weight:1")


def status_mb(field: str) -> float:
    """A `/proc/self/status` size (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def model_dir(name: str, work_dir: Path) -> Path:
    if name == "demo":
        return REPO / "models" / "demo"
    if name == "base":
        path = work_dir / "base"
        if not (path / "config.json").is_file():
            from finetune.tiny import build_base_random_model  # only where it is built: its imports cost RSS

            build_base_random_model(("scratch", "hole", "stain"), path)
        return path
    return Path(name)


def measure(config: str, device: str, threads: int, work_dir: Path, batches: int) -> dict[str, Any]:
    """One configuration, in this (fresh) process."""
    import torch

    torch.set_num_threads(threads)
    from agent.capture.synthetic import SyntheticGenerator
    from agent.detector.factory import create_detector

    name, backend, quantize, batch = config.split(":")
    path = model_dir(name, work_dir)
    imported = status_mb("VmRSS")
    detector: Any = create_detector(backend, path, device=device, quantize=quantize)
    loaded = status_mb("VmRSS")
    frames = [f.image for f in SyntheticGenerator(seed=1, size=512).frames(int(batch))]
    for _ in range(batches):
        detector.detect(frames)
    weights = sum(t.numel() * t.element_size() for t in [*detector.model.parameters(), *detector.model.buffers()])
    cuda = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {"config": config, "model": str(path), "backend": backend, "quantize": quantize, "batch": int(batch),
            "rss_after_imports_mb": round(imported, 1), "rss_after_load_mb": round(loaded, 1),
            "peak_rss_mb": round(status_mb("VmHWM"), 1), "rss_anon_mb": round(status_mb("RssAnon"), 1),
            "rss_file_mb": round(status_mb("RssFile"), 1), "model_tensors_mb": round(weights / 2**20, 1),
            "cuda_max_allocated_mb": cuda, "torch_threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="MODEL:BACKEND:QUANTIZE:BATCH,...")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2, help="batches detected after loading")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/edge-inspect-bench"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one configuration, run by main in a fresh process
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.device, args.threads, args.work_dir, args.batches)))
        return
    rows = []
    for name in {config.split(":")[0] for config in args.configs.split(",")}:
        model_dir(name, args.work_dir)  # built here, so that no measured process pays for building it
    for config in args.configs.split(","):
        command = [sys.executable, "-m", "bench.serving_memory", "--one", config, "--device", args.device,
                   "--threads", str(args.threads), "--batches", str(args.batches), "--work-dir", str(args.work_dir)]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    report = {"bench": "serving-memory", "machine": socket.gethostname(), "platform": platform.platform(),
              "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": args.device,
              "batches": args.batches, "results": rows}
    out = args.out or REPO / "bench" / "results" / f"serving-memory-{args.device}-{socket.gethostname()}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
