"""The stages of `bench/gpu_check.py`, each a function `plan -> dict` run in a process of its own (forked, time-boxed).

A stage says where it is with `say`; it raises `Skip` when it cannot apply (the result is recorded as skipped, with
the reason); anything else it raises is recorded as the stage's failure. The plan carries the sizes (`SIZES`) and what
earlier stages found (the models).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("scratch", "hole", "stain")
SCORE_TOLERANCE = 1e-3  # eager FP16 vs fast FP16: the same scores up to this (tests/agent/detector/test_fast.py)

# Sizes on the GPU (8 minutes on an H100 in all) and in the CPU dry run (tiny model, tiny sizes, a few steps).
SIZES: dict[str, dict[str, Any]] = {
    "gpu": {"tiny_px": 256, "parity_batches": [1, 4], "parity_tokens": 40, "forced_boxes": 4,
            "bench_batches": [1, 8], "bench_iters": 3, "bench_boxes": 10, "accuracy_frames": 32,
            "train_batch": 8, "train_px": 768, "train_steps": 8, "train_warmup": 2, "train_samples": 16,
            "pipe_batch": 8, "pipe_seconds": 8.0, "pipe_rounds": 1, "pipe_formats": ["bmp", "jpg"],
            "pipe_frames": 64, "pipe_px": 512, "pipe_tokens": 40},
    "dry": {"tiny_px": 64, "parity_batches": [2], "parity_tokens": 12, "forced_boxes": 2,
            "bench_batches": [2], "bench_iters": 1, "bench_boxes": 1, "accuracy_frames": 2,
            "train_batch": 2, "train_px": 64, "train_steps": 1, "train_warmup": 1, "train_samples": 2,
            "pipe_batch": 2, "pipe_seconds": 1.0, "pipe_rounds": 1, "pipe_formats": ["bmp"],
            "pipe_frames": 4, "pipe_px": 96, "pipe_tokens": 10},
}
BENCH_BACKENDS = ["torch-eager", "torch-fast", "torch-fast-nograph", "torch-fast-int8"]
# What the stages need beyond torch: a module that does not import is named in the preflight (bench/gpu_wheels.sh)
NEEDED_MODULES = ("transformers", "peft", "safetensors", "cv2", "yaml", "rich", "typer", "pydantic",
                  "pydantic_settings", "structlog", "paho.mqtt.client", "argon2", "prometheus_client",
                  "agent.daemon", "bench.pipeline", "bench.detector", "finetune.train.trainer")


class Skip(Exception):
    """The stage (or part of it) does not apply here; the message says why."""


_clock = {"started": time.time(), "stage": "gpu-check"}


def say(message: str) -> None:
    """One progress line: elapsed time of the whole check, the stage, the message."""
    elapsed = int(time.time() - _clock["started"])  # type: ignore[operator]
    print(f"[{elapsed // 60:02d}:{elapsed % 60:02d} {_clock['stage']}] {message}", flush=True)


def enter(stage: str, started: float | None = None) -> None:
    """Name the stage that `say` prints (and the check's start, in a spawned process)."""
    _clock["stage"] = stage
    if started is not None:
        _clock["started"] = started


# ----- one time-boxed process ---------------------------------------------------------------------------------------
def run_boxed(fn: Callable[[Any], dict[str, Any]], arg: Any, timeout_s: float, result_path: Path,
              method: str = "fork", new_group: bool = False) -> dict[str, Any]:
    """`fn(arg)` in a process of its own for at most `timeout_s` -> its dict under status ok, else status failed,
    skipped or timeout with the reason. `fork` starts warm (the parent's imports are not paid again; the parent must
    not have initialised CUDA: bench/gpu_check.py sees to it), `spawn` starts a fresh interpreter. `new_group`: the
    process leads a process group, and a timeout kills the whole group (a broker, training workers)."""
    import multiprocessing

    sys.stdout.flush()
    sys.stderr.flush()
    result_path.unlink(missing_ok=True)
    started = time.monotonic()
    context: Any = multiprocessing.get_context(method)
    process = context.Process(target=_child, args=(fn, arg, result_path, new_group, dict(_clock)), daemon=False)
    process.start()
    process.join(max(timeout_s, 1.0))
    seconds = round(time.monotonic() - started, 1)
    if process.is_alive():
        _kill(process.pid, new_group)
        process.join()
        return {"status": "timeout", "seconds": seconds, "error": f"stopped at its time box of {timeout_s:.0f} s"}
    try:
        result: dict[str, Any] = json.loads(result_path.read_text())
    except (OSError, ValueError):
        return {"status": "failed", "seconds": seconds,
                "error": f"the process ended without a result (exit code {process.exitcode})"}
    return {**result, "seconds": seconds}


def _kill(pid: int | None, group: bool) -> None:
    if pid is None:
        return
    if group:  # the broker, the training workers: all that the stage started
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):  # also when it had not yet made its group
        os.kill(pid, signal.SIGKILL)


def _child(fn: Callable[[Any], dict[str, Any]], arg: Any, result_path: Path, new_group: bool,
           clock: dict[str, Any]) -> NoReturn:
    enter(clock["stage"], clock["started"])
    code = 0
    try:
        if new_group:
            os.setpgid(0, 0)
        result = {"status": "ok", **fn(arg)}
    except Skip as exc:
        result = {"status": "skipped", "reason": str(exc)}
    except BaseException as exc:  # the stage's failure is the result; the check goes on
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()[-3000:]}
        say(f"failed: {type(exc).__name__}: {exc}")
        code = 1
    result["imported_modules"] = sorted({name.split(".")[0] for name in list(sys.modules)})
    try:
        result_path.write_text(json.dumps(result, default=_plain))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and paths."""
    return value.item() if hasattr(value, "item") else str(value)


def device_of(plan: dict[str, Any]) -> str:
    return "cpu" if plan["dry_run"] else "cuda"


# ----- preflight ----------------------------------------------------------------------------------------------------
def preflight(plan: dict[str, Any]) -> dict[str, Any]:
    """Versions, the device, the int8 kernel, the broker binary, and which needed modules import."""
    import torch

    from agent.detector.quantize import has_int8_kernel

    if torch.cuda._is_in_bad_fork():
        raise RuntimeError("CUDA was initialised in the parent before the stages were forked: rerun with --spawn")
    cuda = torch.cuda.is_available()
    if not cuda and not plan["dry_run"]:
        raise RuntimeError("torch sees no CUDA device: run `python -m bench.gpu_check --dry-run` on a CPU box")
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda": cuda,
                            "int8_kernel": has_int8_kernel(torch.device(device_of(plan)))}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    info["imports"] = {name: _import_problem(name) or "ok" for name in NEEDED_MODULES}
    info["versions"] = _versions()
    info["mosquitto"] = _mosquitto()
    say(f"torch {info['torch']} on {info.get('device_name', 'cpu')}; int8 kernel: {info['int8_kernel']}; "
        f"broker: {info['mosquitto'] or 'none'}")
    missing = {k: v for k, v in info["imports"].items() if v != "ok"}
    if missing:
        say(f"modules that do not import: {missing}")
    return info


def _import_problem(name: str) -> str | None:
    try:
        importlib.import_module(name)
    except Exception as exc:  # any import-time failure is what the preflight reports
        return f"{type(exc).__name__}: {exc}"
    return None


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for dist in ("torch", "transformers", "peft", "numpy", "onnxruntime", "onnxruntime-gpu", "opencv-python-headless"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    return found


def _mosquitto() -> str | None:
    try:
        from agent.devbroker import MOSQUITTO
    except ImportError:
        return None
    return MOSQUITTO if Path(MOSQUITTO).is_file() else None


# ----- models -------------------------------------------------------------------------------------------------------
def published_builder() -> tuple[Callable[..., Path] | None, str | None]:
    """`finetune.published.build_published`, or None and why not (a checkout whose finetune cannot import it: the
    benchmarks then run on the random base-sized stand-in)."""
    try:
        from finetune.published import build_published
    except ImportError as exc:
        return None, f"finetune.published.build_published is not available ({type(exc).__name__}: {exc})"
    return build_published, None


def models(plan: dict[str, Any]) -> dict[str, Any]:
    """The tiny model; the published base config (random weights) if its builder is there, else the random
    base-sized stand-in for the benchmarks. The dry run uses the tiny model for everything."""
    from finetune.tiny import TinySpec, build_base_random_model, build_tiny_model

    work, sizes = Path(plan["work_dir"]), plan["sizes"]
    tiny = _built(work / f"tiny-{sizes['tiny_px']}",
                  lambda out: build_tiny_model(CLASSES, out, TinySpec(image_size=sizes["tiny_px"])))
    builder, missing = published_builder()
    found: dict[str, Any] = {"tiny": str(tiny), "published_builder": missing or "available"}
    if plan["dry_run"]:
        return {**found, "base": str(tiny), "base_kind": "tiny (dry run)",
                "published_base": None, "published_reason": "dry run: tiny sizes only"}
    if builder is not None:
        published = _built(work / "published-base", lambda out: builder("base", out))
        return {**found, "base": str(published), "base_kind": "published-base", "published_base": str(published)}
    base = _built(work / "base-random", lambda out: build_base_random_model(CLASSES, out))
    return {**found, "base": str(base), "base_kind": "base-random (finetune.tiny.build_base_random_model)",
            "published_base": None, "published_reason": missing}


def _built(path: Path, build: Callable[[Path], Any]) -> Path:
    if not (path / "config.json").is_file():
        say(f"building {path.name} ...")
        t0 = time.monotonic()
        build(path)
        say(f"  {path.name} built in {time.monotonic() - t0:.0f} s")
    return path


def _contenders(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(name, model dir or None, why it is skipped) for the per-model stages: tiny, the published base, and the
    random base-sized stand-in when the published one is missing."""
    found = plan["models"]
    rows: list[tuple[str, str | None, str | None]] = [("tiny", found["tiny"], None)]
    rows.append(("published-base", found.get("published_base"), found.get("published_reason")))
    if not plan["dry_run"] and found.get("published_base") is None:
        rows.append(("base-random", found["base"], None))
    return rows


def per_model(plan: dict[str, Any], check: Callable[[str, str], dict[str, Any]]) -> dict[str, Any]:
    """`check(name, model_dir)` for every contender; a skipped one is recorded with its reason, a failing one with
    its error, and the others still run."""
    out: dict[str, Any] = {}
    for name, model_dir, reason in _contenders(plan):
        if model_dir is None:
            say(f"{name}: skipped ({reason})")
            out[name] = {"status": "skipped", "reason": reason}
            continue
        try:
            out[name] = {"status": "ok", **check(name, model_dir)}
        except Exception as exc:  # recorded; the next model still runs
            say(f"{name}: failed: {type(exc).__name__}: {exc}")
            out[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return out


# ----- (a) parity: eager FP16 vs fast FP16, with and without the CUDA-graph step --------------------------------------
def run_once(detector: Any, frames: Sequence[Any]) -> tuple[Any, list[Any]]:
    """One batch through the backend's own `detect` path -> (tokens B x T, detections)."""
    from agent.detector.base import timed_detect

    kept: dict[str, Any] = {}

    def generate(pixels: Any) -> tuple[Any, Any]:
        kept["tokens"], log_probs = detector.generate(pixels)
        return kept["tokens"], log_probs

    detections, _ = timed_detect(frames, detector.preprocess, generate, detector._to_detections)
    return kept["tokens"].cpu(), detections


def compare(expected: tuple[Any, list[Any]], actual: tuple[Any, list[Any]], tolerance: float) -> dict[str, Any]:
    """Tokens equal? Boxes equal? Largest score difference, and whether it is within `tolerance`."""
    import numpy as np
    import torch

    (e_tokens, e_dets), (a_tokens, a_dets) = expected, actual
    same_tokens = e_tokens.shape == a_tokens.shape and torch.equal(e_tokens, a_tokens)
    first = None
    if not same_tokens:
        width = min(e_tokens.shape[1], a_tokens.shape[1])
        rows, cols = np.nonzero((e_tokens[:, :width] != a_tokens[:, :width]).numpy())
        first = [int(rows[0]), int(cols[0])] if len(rows) else f"lengths {e_tokens.shape[1]} vs {a_tokens.shape[1]}"
    same_boxes = all(e.labels == a.labels and np.array_equal(e.xyxy, a.xyxy) for e, a in zip(e_dets, a_dets))
    diffs = [float(np.abs(e.score - a.score).max()) for e, a in zip(e_dets, a_dets) if same_boxes and len(e)]
    worst = max(diffs, default=0.0)
    return {"tokens_equal": same_tokens, "first_difference": first, "boxes_equal": same_boxes,
            "max_score_diff": worst if same_boxes else None,
            "pass": bool(same_tokens and same_boxes and worst <= tolerance)}


def parity(plan: dict[str, Any]) -> dict[str, Any]:
    return per_model(plan, lambda name, model_dir: _parity_of(plan, name, model_dir))


def _parity_of(plan: dict[str, Any], name: str, model_dir: str) -> dict[str, Any]:
    from agent.detector.fast import FastFlorence2Detector
    from agent.detector.florence2 import DetectorOptions, Florence2Detector
    from bench.detector import bench_frames

    sizes, device = plan["sizes"], device_of(plan)
    dtype = "auto" if device == "cuda" else _cpu_half_or_float()  # the dry run: FP16 where this CPU runs it
    cases = []
    for label, boxes in (("free", 0), (f"forced-{sizes['forced_boxes']}", sizes["forced_boxes"])):
        options = DetectorOptions(device=device, max_new_tokens=sizes["parity_tokens"], min_boxes=boxes,
                                  max_boxes=boxes or None, dtype=dtype)
        eager, fast = Florence2Detector(model_dir, options=options), FastFlorence2Detector(model_dir, options=options)
        for batch in sizes["parity_batches"]:
            frames = bench_frames(batch)
            reference = run_once(eager, frames)
            for graphs in (True, False) if fast.device.type == "cuda" else (False,):  # no graphs on a CPU
                fast.use_cuda_graphs = graphs and fast.device.type == "cuda"  # a failed capture turns it off
                row = {"decoding": label, "batch": batch, "graphs_asked": fast.use_cuda_graphs,
                       **compare(reference, run_once(fast, frames), SCORE_TOLERANCE)}
                row["graphs_used"] = fast.use_cuda_graphs and batch in fast._graphs
                say(f"{name} {label} batch {batch} graphs {row['graphs_used']}: tokens equal {row['tokens_equal']}, "
                    f"max score diff {row['max_score_diff']}")
                cases.append(row)
    return {"model": model_dir, "dtype": str(fast.dtype), "score_tolerance": SCORE_TOLERANCE, "cases": cases,
            "pass": all(c["pass"] for c in cases)}


def _cpu_half_or_float() -> str:
    """float16 when this torch runs an FP16 convolution and matmul on the CPU, else float32."""
    import torch

    try:
        x = torch.ones(1, 3, 8, 8, dtype=torch.float16)
        torch.nn.functional.conv2d(x, torch.ones(4, 3, 3, 3, dtype=torch.float16)).flatten(1) @ torch.ones(
            144, 2, dtype=torch.float16)
    except RuntimeError:
        return "float32"
    return "float16"


# ----- (4) int8-weight vs unquantized, on the same backend ----------------------------------------------------------
def quantize(plan: dict[str, Any]) -> dict[str, Any]:
    """torch-fast int8-weight vs torch-fast on each contender (forced boxes); the demo model's accuracy both ways."""
    out = per_model(plan, lambda name, model_dir: _int8_parity(plan, model_dir))
    out["demo-accuracy"] = _demo_accuracy(plan)
    return out


def _int8_parity(plan: dict[str, Any], model_dir: str) -> dict[str, Any]:
    from dataclasses import replace

    import numpy as np

    from agent.detector.fast import FastFlorence2Detector
    from agent.detector.florence2 import DetectorOptions
    from bench.detector import bench_frames

    sizes = plan["sizes"]
    boxes = sizes["forced_boxes"]
    options = DetectorOptions(device=device_of(plan), max_new_tokens=sizes["parity_tokens"], min_boxes=boxes,
                              max_boxes=boxes)
    plain = FastFlorence2Detector(model_dir, options=options)
    int8 = FastFlorence2Detector(model_dir, options=replace(options, quantize="int8-weight"))
    frames = bench_frames(max(sizes["parity_batches"]))
    (p_tokens, p_dets), (q_tokens, q_dets) = run_once(plain, frames), run_once(int8, frames)
    rows_equal = [bool((p == q).all()) for p, q in zip(p_tokens, q_tokens)] if p_tokens.shape == q_tokens.shape \
        else [False] * len(frames)
    labels_equal = [sorted(p.labels) == sorted(q.labels) for p, q in zip(p_dets, q_dets)]
    diffs = [float(np.abs(np.sort(p.score) - np.sort(q.score)).max()) for p, q, same in
             zip(p_dets, q_dets, labels_equal) if same and len(p)]
    result = {"quantized": int8.quantized, "frames": len(frames), "rows_with_equal_tokens": sum(rows_equal),
              "frames_with_equal_labels": sum(labels_equal),
              "max_score_diff_where_labels_equal": max(diffs, default=0.0)}
    say(f"int8 vs plain: {sum(rows_equal)}/{len(frames)} rows equal tokens, {sum(labels_equal)} equal labels")
    return result


def _demo_accuracy(plan: dict[str, Any]) -> dict[str, Any]:
    """The shipped demo model (trained) on frames it never saw: truth boxes found at IoU 0.5, plain vs int8."""
    from agent.capture.synthetic import SyntheticGenerator
    from agent.detector.fast import FastFlorence2Detector
    from agent.detector.florence2 import DetectorOptions
    from finetune.metrics import match_frame

    frames = SyntheticGenerator(seed=4242, size=256).frames(plan["sizes"]["accuracy_frames"])
    images = [f.image for f in frames]
    out: dict[str, Any] = {"model": "models/demo", "frames": len(frames),
                           "truth_boxes": sum(len(f.detections) for f in frames)}
    for mode in ("none", "int8-weight"):
        detector = FastFlorence2Detector(REPO / "models" / "demo",
                                         options=DetectorOptions(device=device_of(plan), quantize=mode))
        found = [d for start in range(0, len(images), 8) for d in detector.detect(images[start:start + 8])]
        matches = [match_frame(f.detections, d, 0.5) for f, d in zip(frames, found)]
        out[mode] = {"found": sum(sum(g == p for g, p in m.pairs) for m in matches),
                     "predicted": sum(len(d) for d in found)}
    say(f"demo accuracy: truth {out['truth_boxes']}, found plain {out['none']['found']}, "
        f"int8 {out['int8-weight']['found']}")
    return out


# ----- (b) the detector bench ---------------------------------------------------------------------------------------
def detector(plan: dict[str, Any]) -> dict[str, Any]:
    """bench/detector.py's measurement on the tiny and the base model: backends x batch 1 and 8 (dry: 1 and 2)."""
    from bench.detector import machine_peaks, parse_args, run_model

    sizes, cuda = plan["sizes"], not plan["dry_run"]
    batches = ",".join(map(str, sizes["bench_batches"]))
    args = parse_args(["--models", "tiny,base", "--backends", ",".join(BENCH_BACKENDS), "--batches", batches,
                       "--base-batches", batches, "--iters", str(sizes["bench_iters"]), "--base-iters",
                       str(sizes["bench_iters"]), "--boxes", str(sizes["bench_boxes"]), "--device", device_of(plan),
                       "--work-dir", str(Path(plan["work_dir"]) / "detector-bench")])
    peaks = machine_peaks(args.threads, cuda)
    found = plan["models"]
    results = []
    for name, model_dir in (("tiny", found["tiny"]), ("base", found["base"])):
        if plan["dry_run"] and name == "base":
            continue  # the dry run's base is the tiny model
        say(f"{name} ({model_dir}): {', '.join(BENCH_BACKENDS)} at batch {batches}")
        results += [asdict(r) for r in run_model(name, args, peaks, cuda, Path(model_dir))]
    return {"base_kind": found["base_kind"], "peaks": peaks, "boxes_forced": sizes["bench_boxes"],
            "results": results}


# ----- (c) LoRA training: gradient checkpointing on and off -------------------------------------------------------
def train(plan: dict[str, Any]) -> dict[str, Any]:
    """bench/finetune.py's worker (our LoRA trainer, AMP as configured: bf16 on a GPU that has it) on the base model
    at `train_px`, checkpointing on, then off; each in a process of its own for its own peak memory."""
    from bench.finetune import make_data

    sizes = plan["sizes"]
    model = plan["models"]["tiny" if plan["dry_run"] else "base"]
    data = Path(plan["work_dir"]) / f"train-data-{sizes['train_px']}px-{sizes['train_samples']}"
    if not (data / "annotations.jsonl").is_file():  # a rerun on the same machine reuses it
        make_data(data, sizes["train_px"], sizes["train_samples"])
    configs = ("ours_ckpt_on", "ours_ckpt_off")
    runs = {}
    for i, config in enumerate(configs):
        args = argparse.Namespace(config=config, model=model, data=str(data), batch=sizes["train_batch"],
                                  steps=sizes["train_steps"], warmup=sizes["train_warmup"], threads=0)
        say(f"{config}: batch {args.batch} at {sizes['train_px']} px, {args.warmup} + {args.steps} steps")
        share = (plan["deadline"] - time.monotonic()) / (len(configs) - i)
        runs[config] = run_boxed(_train_worker, args, share, Path(plan["work_dir"]) / f"train-{config}.json",
                                 plan["start_method"])
        say(f"{config}: {_brief(runs[config])}")
    return {"model": model, "base_kind": plan["models"]["base_kind"], "image_px": sizes["train_px"],
            "batch": sizes["train_batch"], "runs": runs, **_train_ratios(runs)}


def _train_worker(args: argparse.Namespace) -> dict[str, Any]:
    from bench.finetune import worker

    return worker(args)


def _brief(run: dict[str, Any]) -> str:
    if run.get("status") != "ok":
        return f"{run.get('status')}: {run.get('error') or run.get('reason')}"
    return f"{run['samples_per_s']:.2f} samples/s, peak {run['peak_memory_mb']:.0f} MB, amp {run['amp']}"


def _train_ratios(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    on, off = runs.get("ours_ckpt_on", {}), runs.get("ours_ckpt_off", {})
    if on.get("status") != "ok" or off.get("status") != "ok":
        return {}
    return {"checkpointing_speed_ratio": on["samples_per_s"] / off["samples_per_s"],
            "checkpointing_memory_ratio": on["peak_memory_mb"] / off["peak_memory_mb"]}


# ----- (d) the daemon pipeline vs the bare detector -----------------------------------------------------------------
class _NoBroker:
    """A port nobody listens on: the daemon's MQTT client keeps retrying and results stay in the outbox, which is
    where bench/pipeline.py counts them."""

    def __init__(self) -> None:
        from agent.ports import free_port

        self.port = free_port()


def pipeline(plan: dict[str, Any]) -> dict[str, Any]:
    """bench/pipeline.py's format comparison on the base model with torch-fast (dry: the tiny model)."""
    from agent.cli.run import quiet_model_loading
    from agent.devbroker import Broker
    from agent.health.logging import configure_logging
    from bench.pipeline import run_all

    sizes = plan["sizes"]
    configure_logging("warning")
    quiet_model_loading()
    model = plan["models"]["base"]
    args = argparse.Namespace(model=model, classes=",".join(_classes(model)), backend="torch-fast",
                              batch=sizes["pipe_batch"], max_new_tokens=sizes["pipe_tokens"],
                              seconds=sizes["pipe_seconds"], rounds=sizes["pipe_rounds"],
                              formats=sizes["pipe_formats"], frames=sizes["pipe_frames"], size=sizes["pipe_px"])
    broker_binary = _mosquitto()
    say(f"model {model}, batch {args.batch}, {args.rounds} round(s) x {args.seconds:g} s, formats "
        f"{args.formats}, broker {broker_binary or 'none (results counted in the outbox)'}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker: Any = Broker(workdir=tmp / "broker") if broker_binary else _NoBroker()
        if broker_binary:
            broker.start()
        try:
            measured = run_all(args, tmp, broker)
        finally:
            if broker_binary:
                broker.stop()
    return {"model": model, "base_kind": plan["models"]["base_kind"], "backend": args.backend,
            "batch": args.batch, "frame_px": args.size, "broker": broker_binary, **measured}


def _classes(model_dir: str) -> tuple[str, ...]:
    from agent.modeldir import MissingClassList, read_class_names

    try:
        return read_class_names(model_dir)
    except MissingClassList:
        return CLASSES
