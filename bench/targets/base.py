"""The interface the runner needs from a target, and what the HTTP targets share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from bench.clients.engines import EngineName, open_engine
from bench.clients.exchange import Engine
from bench.config import BenchConfig
from bench.metrics import Slo
from bench.phases import LevelPlan
from bench.scheduler import Launch
from bench.summary import GeneratorHealth, LevelSummary

Record = Any
"""`RequestRecord` or `AgentRecord`: whatever the target's summaries understand."""
R = TypeVar("R")


class PreparedLevel(Protocol):
    """A level ready to run: requests encoded (and conversations created) before the clock starts."""

    @property
    def launch(self) -> Launch[Any]: ...

    @property
    def finish(self) -> Callable[[list[Any]], list[Record]]: ...


class Target(Protocol):
    kind: str

    @property
    def clock(self) -> str:
        """`kernel` or `user`: where receive times come from (see `Exchange.clock`)."""
        ...

    async def open(self) -> None: ...

    def resync_clock(self) -> None: ...

    async def close(self) -> None: ...

    async def prepare(self, plan: LevelPlan) -> PreparedLevel:
        """Everything the level needs before its clock starts."""
        ...

    def summarize(
        self, plan: LevelPlan, records: Sequence[Record], health: GeneratorHealth, slo: Slo
    ) -> LevelSummary: ...


@dataclass(slots=True)
class Prepared(Generic[R]):
    """A `PreparedLevel`: how to launch request `i`, and how to turn the results into records."""

    launch: Launch[Any]
    finish: Callable[[list[Any]], list[R]]


class EngineTarget:
    """A target's engine: opened from the configuration, its clock, closed with the target."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("open() the target first")
        return self._engine

    @property
    def clock(self) -> str:
        return "kernel" if self.engine.name == "socket" else "user"

    def resync_clock(self) -> None:
        """Re-measure the kernel clock's offset (called about once a second while a level runs)."""
        clock = getattr(self._engine, "clock", None)
        if clock is not None:
            clock.refresh()

    async def open(self) -> None:
        name: EngineName = self.config.engine
        self._engine = await open_engine(self.config.base_url, name)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.close()
