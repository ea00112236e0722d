"""bench/gpu_wheels.txt: what the GPU check carries to the lent GPU machine. Closed (every requirement of a carried
wheel is carried or on the machine), pinned to what the project runs, and fetched by bench/gpu_wheels.sh."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

BENCH = Path(__file__).resolve().parents[2] / "bench"
# the GPU machine's interpreter: CPython 3.12 on x86-64 Linux
GPU_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3", "platform_machine": "x86_64",
               "sys_platform": "linux", "platform_system": "Linux", "implementation_name": "cpython",
               "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}


def listed(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class GpuBox:
    """The image's distributions plus the carried wheels, by normalised name."""

    image_file: Path
    wheels_file: Path

    @staticmethod
    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    def pins(self) -> dict[str, str]:
        return dict(line.split("==") for line in listed(self.wheels_file))

    def available(self) -> set[str]:
        return {self.normal(n) for n in listed(self.image_file)} | {self.normal(n) for n in self.pins()}


GPU_BOX = GpuBox(BENCH / "gpu_image.txt", BENCH / "gpu_wheels.txt")


def project_dependencies() -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((BENCH.parent / "pyproject.toml").read_text())["project"]
    return {GpuBox.normal(Requirement(r).name) for r in project["dependencies"]}


def test_every_wheel_is_pinned_to_the_version_the_project_runs() -> None:
    for name, pinned in GPU_BOX.pins().items():
        try:
            assert version(name) == pinned, f"{name}: the venv has {version(name)}, bench/gpu_wheels.txt {pinned}"
        except PackageNotFoundError:
            pytest.fail(f"{name} is carried to the GPU machine but not installed here")


def test_every_requirement_of_a_carried_wheel_is_carried_or_on_the_machine() -> None:
    missing = {}
    for name in GPU_BOX.pins():
        for text in requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(GPU_MARKERS):
                continue  # an extra, or another Python
            if GPU_BOX.normal(requirement.name) not in GPU_BOX.available():
                missing[name] = requirement.name
    assert missing == {}, "add these to bench/gpu_wheels.txt"


def test_the_project_dependencies_the_check_needs_are_carried_or_on_the_machine() -> None:
    from bench.gpu_stages import NEEDED_MODULES

    third_party = {m.split(".")[0] for m in NEEDED_MODULES} - {"agent", "bench", "finetune", "calibration"}
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    dists = {GpuBox.normal(d) for top in third_party for d in owners[top]}
    assert dists <= project_dependencies() | {"torch"}  # what the project declares, not a stray import
    assert dists - GPU_BOX.available() == set()


def test_the_download_script_reads_the_list_for_python_312() -> None:
    script = (BENCH / "gpu_wheels.sh").read_text()
    assert "gpu_wheels.txt" in script and "--python-version 3.12" in script and "--only-binary=:all:" in script
    assert "manylinux2014_x86_64" in script
