"""Detector benchmark (issue 5; not a test): backend x precision x batch, measured side by side in one run.

Every configuration sees the same synthetic frames and decodes the same number of tokens: 10 boxes are forced
through the constrained decoder (`min_boxes == max_boxes`), so random-weight models do comparable work. Reported per
configuration: p50/p99 latency per frame, frames/s, decoded tokens/s, peak memory (sampled RSS on CPU,
`torch.cuda.max_memory_allocated` on GPU), the ratio to `torch-eager` (same model, same batch, same run), the split
vision+encoder vs per-decoded-token time, and the physical floor of the machine and our distance to it.

Models: `tiny` (the test model, 256 px) and `base` (Florence-2-base architecture, random init, 768 px). Both are built
(and exported to ONNX) once into --work-dir. A CPU run that fits in ~10 minutes on 2 cores:

    .venv/bin/python -m bench.detector --models tiny,base --batches 1,4,8 --iters 5 --base-iters 2 \
        --base-backends torch-eager,torch-fast,onnx-fp32,onnx-int8
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLASSES = ("scratch", "hole", "stain")
# torch-fast-nograph: torch-fast without the CUDA-graph decode step; torch-fast-int8: with model.quantize int8-weight
BACKENDS = ("torch-eager", "torch-fast", "torch-fast-nograph", "torch-fast-int8", "onnx-fp32", "onnx-fp16",
            "onnx-int8")
# Peak dense throughput and memory bandwidth of GPU targets (datasheets), for the floor when on such a machine.
GPU_TABLE = {"H100": (989e12, 3.35e12), "H200": (989e12, 4.8e12), "A100": (312e12, 2.0e12), "Orin": (42.5e12, 204e9)}


@dataclass
class Result:
    model: str
    backend: str
    batch: int
    iters: int
    tokens_per_frame: int
    p50_ms_per_frame: float
    p99_ms_per_frame: float
    frames_per_s: float
    decoded_tokens_per_s: float
    peak_memory_mb: float
    memory_kind: str
    encode_ms_per_batch: float | None = None
    decode_ms_per_token: float | None = None
    ratio_to_eager: float | None = None
    decode_ratio_to_eager: float | None = None
    floor_ms_per_frame: float | None = None
    distance_to_floor: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ----- models ---------------------------------------------------------------------------------------------------------
def ensure_model(name: str, work_dir: Path) -> Path:
    from finetune.tiny import build_base_random_model, build_tiny_model

    path = work_dir / name
    if not (path / "config.json").is_file():
        print(f"building the {name} model in {path} ...", flush=True)
        (build_base_random_model if name == "base" else build_tiny_model)(CLASSES, path)
    return path


def ensure_export(model_dir: Path, precision: str) -> Path:
    from finetune.export import MANIFEST, export_onnx

    out = model_dir.parent / f"{model_dir.name}-onnx-{precision}"
    if not (out / MANIFEST).is_file():
        print(f"exporting {model_dir.name} to ONNX {precision} ...", flush=True)
        t0 = time.perf_counter()
        export_onnx(model_dir, out, precision=precision)
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def make_detector(backend: str, model_dir: Path, options: Any, device: str) -> Any:
    from agent.detector.fast import FastFlorence2Detector
    from agent.detector.florence2 import Florence2Detector
    from agent.detector.onnx import OnnxDetector

    if backend == "torch-eager":
        return Florence2Detector(model_dir, options=options)
    if backend == "torch-fast":
        return FastFlorence2Detector(model_dir, options=options)
    if backend == "torch-fast-nograph":
        return FastFlorence2Detector(model_dir, options=options, cuda_graphs=False)
    if backend == "torch-fast-int8":
        return FastFlorence2Detector(model_dir, options=replace(options, quantize="int8-weight"))
    return OnnxDetector(ensure_export(model_dir, backend.removeprefix("onnx-")), options=options)


def bench_frames(count: int) -> list[np.ndarray]:
    """The same synthetic line-camera frames (512 px, with defects) for every configuration."""
    from agent.capture.synthetic import SyntheticGenerator

    gen = SyntheticGenerator(seed=5, size=512)
    return [gen.frame(i).image for i in range(count)]


# ----- measurement ----------------------------------------------------------------------------------------------------
def current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak RSS sampled every 5 ms (CPU), or `torch.cuda.max_memory_allocated` (GPU), while the block runs."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.peak, self._stop = cuda, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


def timed(run: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def eager_split(detector: Any, pixels: torch.Tensor) -> float:
    """Vision tower + encoder time of torch-eager (the same modules HF generate runs before decoding), ms."""
    from agent.detector.fast import encode_image_and_prompt

    with torch.inference_mode():
        return timed(lambda: encode_image_and_prompt(detector.model, detector._prompt_ids, pixels)) * 1e3


@dataclass
class Contender:
    """One backend under test: its detector, memory added by loading + first run, and its timings."""

    backend: str
    detector: Any
    memory_bytes: int
    steps: int = 0
    times: list[float] = field(default_factory=list)
    encode_ms: list[float] = field(default_factory=list)


def load_contender(backend: str, model_dir: Path, options: Any, device: str, frames: list[np.ndarray],
                   cuda: bool) -> Contender:
    """Build the detector and run it once (warm-up), recording the memory that added (RSS, or CUDA peak)."""
    before = 0 if cuda else current_rss()
    with PeakMemory(cuda) as memory:
        detector = make_detector(backend, model_dir, options, device)
        tokens, _ = detector.generate(detector.preprocess(frames))
    return Contender(backend, detector, memory.peak - before, int(tokens.shape[1]))


def time_interleaved(contenders: list[Contender], frames: list[np.ndarray], iters: int, warmup: int) -> None:
    """Round-robin over backends each iteration, so load from other processes hits all of them alike. torch-eager
    (HF generate) has no split of its own: its vision+encoder time is measured right after each timed run."""
    for it in range(warmup + iters):
        for c in contenders:
            elapsed = timed(partial(c.detector.detect, frames))
            if it < warmup:
                continue
            c.times.append(elapsed)
            if c.backend == "torch-eager":
                c.encode_ms.append(eager_split(c.detector, c.detector.preprocess(frames)))
            else:
                c.encode_ms.append(float(c.detector.last_timing.get("encode_ms", np.nan)))


def summarise(model: str, c: Contender, batch: int, cuda: bool) -> Result:
    per_frame = np.asarray(c.times) * 1e3 / batch
    median = float(np.median(per_frame))
    result = Result(model, c.backend, batch, len(c.times), c.steps, float(np.percentile(per_frame, 50)),
                    float(np.percentile(per_frame, 99)), 1e3 / median, c.steps * 1e3 / median,
                    c.memory_bytes / 2**20, "cuda_max_allocated" if cuda else "rss_added_by_load_and_first_run")
    if not np.isnan(c.encode_ms).all():
        # per iteration: (run - its vision+encoder time) / tokens, then the median over iterations
        runs_ms = np.asarray(c.times) * 1e3
        encode = np.asarray(c.encode_ms)
        result.encode_ms_per_batch = float(np.nanmedian(encode))
        result.decode_ms_per_token = float(np.nanmedian(np.clip(runs_ms - encode, 0, None))) / c.steps
    return result


# ----- physical floor -------------------------------------------------------------------------------------------------
def machine_peaks(threads: int, cuda: bool) -> dict[str, Any]:
    """(peak FLOP/s, memory bandwidth B/s): datasheet for a known GPU, measured here for the CPU."""
    if cuda:
        name = torch.cuda.get_device_name()
        for key, (flops, bw) in GPU_TABLE.items():
            if key in name:
                return {"device": name, "peak_flops": flops, "bandwidth": bw, "source": "datasheet (dense FP16)"}
        return {"device": name, "peak_flops": None, "bandwidth": None, "source": "unknown GPU"}
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    flops = max(2 * 1024**3 / timed(lambda: a @ b) for _ in range(20))  # best of 20: the least disturbed
    big = np.ones(64 * 2**20 // 8)
    copy_bytes = 2 * big.nbytes  # read + write
    bandwidth = max(copy_bytes / timed(big.copy) for _ in range(10))
    return {"device": platform.processor() or platform.machine(), "peak_flops": flops, "bandwidth": bandwidth,
            "source": f"measured: fp32 1024^3 matmul, {threads} threads; 64 MiB copy"}


def model_costs(model_dir: Path) -> dict[str, float]:
    """Vision+encoder FLOPs per frame and decoder weight bytes per token (FP32; lm_head sliced and full)."""
    from torch.utils.flop_counter import FlopCounterMode

    from agent.detector.fast import FastFlorence2Detector, encode_image_and_prompt
    from agent.detector.florence2 import DetectorOptions

    detector = FastFlorence2Detector(model_dir, options=DetectorOptions(device="cpu"))
    pixels = detector.preprocess(bench_frames(1))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        encode_image_and_prompt(detector.model, detector._prompt_ids, pixels)
    layers = sum(p.numel() for p in detector.decoder.layers.parameters())
    sliced = detector.decoder.lm_weight.numel()
    full = detector.model.get_output_embeddings().weight.numel()
    return {"encode_flops": float(counter.get_total_flops()), "decoder_layer_params": float(layers),
            "lm_head_sliced_params": float(sliced), "lm_head_full_params": float(full)}


def floor_ms_per_frame(costs: dict[str, float], peaks: dict[str, Any], tokens: int, batch: int,
                       bytes_per_param: float) -> float | None:
    """Vision FLOPs / peak FLOP/s + tokens x (weight bytes / bandwidth) shared by the batch, per frame."""
    if not peaks.get("peak_flops") or not peaks.get("bandwidth"):
        return None
    weight_bytes = (costs["decoder_layer_params"] + costs["lm_head_sliced_params"]) * bytes_per_param
    compute = costs["encode_flops"] / peaks["peak_flops"]
    decode = tokens * weight_bytes / peaks["bandwidth"] / batch
    return (compute + decode) * 1e3


# ----- driver ---------------------------------------------------------------------------------------------------------
def run_model(name: str, args: argparse.Namespace, peaks: dict[str, Any], cuda: bool,
              model_dir: Path | None = None) -> list[Result]:
    """Every backend x batch of model `name` (tiny or base; `model_dir` overrides the one built in --work-dir)."""
    from agent.detector.florence2 import DetectorOptions

    model_dir = model_dir or ensure_model(name, args.work_dir)
    costs = model_costs(model_dir)
    options = DetectorOptions(device=args.device, max_new_tokens=args.boxes * 7 + 4, min_boxes=args.boxes,
                              max_boxes=args.boxes)
    backends = args.base_backends if name == "base" else args.backends
    for backend in backends:
        if backend.startswith("onnx-"):
            ensure_export(model_dir, backend.removeprefix("onnx-"))
    results = []
    for batch in args.base_batches if name == "base" else args.batches:
        frames = bench_frames(batch)
        print(f"{name} batch {batch}: loading {', '.join(backends)} ...", flush=True)
        contenders = [load_contender(b, model_dir, options, args.device, frames, cuda) for b in backends]
        time_interleaved(contenders, frames, args.base_iters if name == "base" else args.iters, args.warmup)
        for c in contenders:
            result = summarise(name, c, batch, cuda)
            precision = c.backend.rsplit("-", 1)[-1]
            bytes_per_param = {"fp16": 2.0, "int8": 1.0}.get(precision, 2.0 if cuda else 4.0)
            result.floor_ms_per_frame = floor_ms_per_frame(costs, peaks, c.steps, batch, bytes_per_param)
            result.extra["costs"] = costs
            results.append(result)
            print(f"  {c.backend:12s} {result.p50_ms_per_frame:9.1f} ms/frame", flush=True)
        del contenders
        gc.collect()
    add_ratios(results)
    return results


def add_ratios(results: list[Result]) -> None:
    eager = {(r.model, r.batch): r for r in results if r.backend == "torch-eager"}
    for r in results:
        ref = eager.get((r.model, r.batch))
        if ref is not None:
            r.ratio_to_eager = ref.p50_ms_per_frame / r.p50_ms_per_frame
            if ref.decode_ms_per_token and r.decode_ms_per_token:
                r.decode_ratio_to_eager = ref.decode_ms_per_token / r.decode_ms_per_token
        if r.floor_ms_per_frame:
            r.distance_to_floor = r.p50_ms_per_frame / r.floor_ms_per_frame


def print_table(results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="detector benchmark (per frame; ratios vs torch-eager in this run)")
    for col in ("model", "backend", "batch", "tok", "p50 ms", "p99 ms", "frames/s", "tok/s", "peak MB",
                "enc ms/batch", "ms/token", "x eager", "x eager decode", "floor ms", "x floor"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r.model, r.backend, str(r.batch), str(r.tokens_per_frame), f"{r.p50_ms_per_frame:.1f}",
                      f"{r.p99_ms_per_frame:.1f}", f"{r.frames_per_s:.2f}", f"{r.decoded_tokens_per_s:.0f}",
                      f"{r.peak_memory_mb:.0f}", _fmt(r.encode_ms_per_batch), _fmt(r.decode_ms_per_token, 2),
                      _fmt(r.ratio_to_eager, 2), _fmt(r.decode_ratio_to_eager, 2), _fmt(r.floor_ms_per_frame, 2),
                      _fmt(r.distance_to_floor, 1))
    Console(width=200).print(table)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    csv = lambda text: [t.strip() for t in text.split(",") if t.strip()]  # noqa: E731
    ints = lambda text: [int(t) for t in csv(text)]  # noqa: E731
    parser.add_argument("--models", type=csv, default=["tiny", "base"], help="tiny,base")
    parser.add_argument("--backends", type=csv, default=list(BACKENDS), help=",".join(BACKENDS))
    parser.add_argument("--base-backends", type=csv, default=None,
                        help="backends for the base model (default: --backends)")
    parser.add_argument("--batches", type=ints, default=[1, 4, 8], help="batch sizes for the tiny model")
    parser.add_argument("--base-batches", type=ints, default=[1], help="batch sizes for the base model")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per configuration (tiny)")
    parser.add_argument("--base-iters", type=int, default=3, help="timed iterations per configuration (base)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed iterations after the warm-up run at load")
    parser.add_argument("--boxes", type=int, default=10, help="boxes forced per frame (fixes the decode length)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/edge-inspect-bench"), help="models, exports")
    parser.add_argument("--machine", default=socket.gethostname(), help="name in the output file")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/detector-<machine>)")
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    args.base_backends = args.base_backends or args.backends
    unknown = [b for b in args.backends + args.base_backends if b not in BACKENDS]
    if unknown:
        raise SystemExit(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    if [m for m in args.models if m not in ("tiny", "base")]:
        raise SystemExit(f"unknown model in {args.models}; choose tiny and/or base")
    if args.iters < 1 or args.base_iters < 1 or args.boxes < 1:
        raise SystemExit("--iters, --base-iters and --boxes must be >= 1")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started, load_before = time.perf_counter(), os.getloadavg()
    peaks = machine_peaks(args.threads, cuda)
    results = [r for name in args.models for r in run_model(name, args, peaks, cuda)]
    print_table(results)
    report = {
        "bench": "detector", "machine": args.machine, "platform": platform.platform(), "device": peaks["device"],
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "threads": args.threads,
        "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "versions": _versions(), "peaks": peaks, "boxes_forced": args.boxes, "wall_s": time.perf_counter() - started,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "results": [asdict(r) for r in results],
    }
    out = args.out or RESULTS_DIR / f"detector-{args.machine}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


def _versions() -> dict[str, str]:
    import onnxruntime
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__}


if __name__ == "__main__":
    main()
