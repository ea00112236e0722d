"""GPU check (issue 15): the paths that never ran before a GPU was lent, in one command of at most 8 minutes.

Stages, in order, each in a forked process of its own with a time box (a stage that fails, hangs or runs out of time
is recorded with the reason, and the check goes on with the next):

  preflight  versions, the GPU, the int8 kernel, the MQTT broker, which needed modules import
  models     the tiny model; Florence-2-base's published config with random weights (`finetune.published`, when it
             is there; else the random base-sized stand-in `finetune.tiny.build_base_random_model`)
  parity     (a) torch-eager FP16 vs torch-fast FP16, with and without the CUDA-graph decode step: tokens equal,
             boxes equal, scores within 1e-3; on the tiny model and the published base
  quantize   torch-fast int8-weight vs torch-fast (tokens, labels, scores), and the demo model's accuracy both ways
  detector   (b) bench/detector.py: torch-eager, torch-fast, without graphs, int8-weight at batch 1 and 8
             (ms/frame, frames/s, x eager, x floor)
  train      (c) bench/finetune.py's worker: LoRA on the base model at batch 8, 768 px, gradient checkpointing on and
             off (samples/s, peak GPU memory, AMP dtype, the losses)
  pipeline   (d) bench/pipeline.py: the daemon's frames/s vs the bare detector's (torch-fast, base model)

One JSON lands in bench/results/gpu-check-<GPU name>.json. `--dry-run` runs every stage on the CPU with the tiny
model, tiny sizes and a few steps (the parity stage in FP16 where the CPU runs it, the rest in FP32; no CUDA graphs),
to keep this script from rotting (tests/bench/test_gpu_check.py).

    python -m bench.gpu_check                 # on the GPU machine (see docs/performance.md for the wheels it needs)
    python -m bench.gpu_check --dry-run --out /tmp/gpu-check.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import gpu_stages
from bench.gpu_stages import SIZES, enter, run_boxed, say

RESULTS = Path(__file__).resolve().parent / "results"
# name -> (stage, time box in seconds on the GPU); the boxes add up to the 8-minute budget
STAGES: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], float]] = {
    "preflight": (gpu_stages.preflight, 40.0),
    "models": (gpu_stages.models, 70.0),
    "parity": (gpu_stages.parity, 60.0),
    "quantize": (gpu_stages.quantize, 45.0),
    "detector": (gpu_stages.detector, 100.0),
    "train": (gpu_stages.train, 70.0),
    "pipeline": (gpu_stages.pipeline, 65.0),
}
NEEDS_MODELS = ("parity", "quantize", "detector", "train", "pipeline")
MIN_STAGE_S = 10.0  # a stage that would get less than this is skipped: the budget is spent
# Imported once here, so that each forked stage starts warm. CUDA must stay untouched in this process (a forked child
# cannot initialise it after its parent did): PYTORCH_NVML_BASED_CUDA_CHECK makes `torch.cuda.is_available()`, if
# any import calls it, ask NVML instead of the CUDA runtime; the preflight stage checks it held (else: --spawn).
WARM_IMPORTS = ("torch", "transformers", "peft", "agent.detector.fast", "bench.detector", "bench.finetune",
                "finetune.train.trainer", "finetune.tiny", "bench.pipeline")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every stage on the CPU, tiny model and sizes")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset, in the order above")
    parser.add_argument("--budget-s", type=float, default=450.0, help="the whole check's wall-clock limit")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/edge-inspect-gpu-check"),
                        help="models, data and stage results (kept: a rerun reuses the built models)")
    parser.add_argument("--spawn", action="store_true",
                        help="start each stage in a fresh interpreter instead of forking this one (slower start)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON (default bench/results/gpu-check-<GPU name>.json)")
    args = parser.parse_args(argv)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        parser.error(f"--stages: unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    if args.budget_s < MIN_STAGE_S:
        parser.error(f"--budget-s {args.budget_s:g} is below one stage's minimum of {MIN_STAGE_S:g} s")
    return args


def warm_imports() -> dict[str, str]:
    """Import what the stages use, so each forked stage starts warm; a module that fails is left to the preflight
    and the stages to report."""
    failed = {}
    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception as exc:  # reported by the preflight stage with its reason
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed


def run_stages(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each stage in its own process within its time box and the budget left; a models stage that fails leaves
    the stages that need models skipped, naming it."""
    deadline = time.monotonic() + args.budget_s
    results: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(args.stages, 1):
        stage, box = STAGES[name]
        left = deadline - time.monotonic()
        timeout = left if args.dry_run else min(box, left)  # the dry run: only the budget (a loaded CPU is slow)
        if name in NEEDS_MODELS and "models" not in plan:
            results[name] = {"status": "skipped", "reason": f"no models: {_models_problem(results)}"}
        elif timeout < MIN_STAGE_S:
            results[name] = {"status": "skipped", "reason": f"budget spent ({left:.0f} s of {args.budget_s:g} left)"}
        else:
            enter(name)
            say(f"stage {index}/{len(args.stages)}, time box {timeout:.0f} s")
            plan["deadline"] = time.monotonic() + timeout
            results[name] = run_boxed(stage, plan, timeout, Path(plan["work_dir"]) / f"stage-{name}.json",
                                      plan["start_method"], new_group=True)
            plan.setdefault("imported_modules", set()).update(results[name].pop("imported_modules", []))
            if name == "models" and results[name]["status"] == "ok":
                plan["models"] = results[name]
        say(f"{results[name]['status']} ({results[name].get('seconds', 0)} s)")
    return results


def _models_problem(results: dict[str, dict[str, Any]]) -> str:
    models = results.get("models")
    if models is None:
        return "the models stage was not run (add it to --stages)"
    return f"the models stage ended {models['status']}: {models.get('error') or models.get('reason')}"


def out_path(args: argparse.Namespace, preflight: dict[str, Any]) -> Path:
    if args.out is not None:
        return Path(args.out)
    name = "dry-run-cpu" if args.dry_run else str(preflight.get("device_name") or "unknown-gpu")
    return RESULTS / f"gpu-check-{re.sub(r'[^A-Za-z0-9.]+', '-', name).strip('-')}.json"


def imported_distributions(stage_modules: set[str]) -> list[str]:
    """The installed distributions whose modules this process or a stage imported (what a GPU box must have)."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    tops = stage_modules | {name.split(".")[0] for name in list(sys.modules)}
    return sorted({dist for top in tops for dist in owners.get(top, [])})


def summary_line(name: str, result: dict[str, Any]) -> str:
    status = result["status"]
    why = result.get("error") or result.get("reason")
    return f"{name:10s} {status:8s} {result.get('seconds', 0):6.1f} s" + (f"  {why}" if why else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # before torch is imported: see WARM_IMPORTS
    plan: dict[str, Any] = {"dry_run": args.dry_run, "work_dir": str(args.work_dir),
                            "sizes": SIZES["dry" if args.dry_run else "gpu"],
                            "start_method": "spawn" if args.spawn else "fork"}
    say(f"{'dry run on the CPU' if args.dry_run else 'GPU check'}: stages {', '.join(args.stages)}; "
        f"budget {args.budget_s:g} s; importing ...")
    warm_failures = {} if args.spawn else warm_imports()
    results = run_stages(args, plan)
    report = {"bench": "gpu-check", "dry_run": args.dry_run, "when": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "budget_s": args.budget_s, "wall_s": round(time.monotonic() - started, 1),
        "sizes": plan["sizes"], "warm_import_failures": warm_failures, "stages": results,
        "imported_distributions": imported_distributions(plan.get("imported_modules", set()))}
    path = out_path(args, results.get("preflight", {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    enter("gpu-check")
    for name, result in results.items():
        print(summary_line(name, result), flush=True)
    say(f"wrote {path}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
