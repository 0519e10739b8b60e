"""Build small data wheels like the model's, and a catalogue entry pinning them, for offline tests."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from backends.local.catalogue import ModelSpec, WeightPart


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A valid wheel (pip accepts it) whose only payload is `member` holding `data`."""
    dist = package.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        member: data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},{_record_hash(body)},{len(body)}\n" for name, body in files.items())
    record += f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
        archive.writestr(f"{info}/RECORD", record)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_model(folder: Path, chunks: list[bytes], *, name: str = "tiny", version: str = "1.0.0") -> ModelSpec:
    """Wheels `tiny-partN` in `folder` (a find-links index) and the catalogue entry that pins them."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for number, chunk in enumerate(chunks, start=1):
        package = f"{name}-part{number}"
        member = f"{package.replace('-', '_')}/data/part{number:02d}.bin"
        wheel = build_wheel(folder, package, version, member, chunk)
        parts.append(WeightPart(package=package, member=member, wheel_sha256=sha256(wheel.read_bytes())))
    whole = b"".join(chunks)
    return ModelSpec(
        name=name,
        description="test model",
        served_name=f"{name}-instruct",
        gguf_file=f"{name}.gguf",
        size=len(whole),
        sha256=sha256(whole),
        version=version,
        parts=tuple(parts),
    )
