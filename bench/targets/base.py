"""The interface the runner needs from a target."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bench.metrics import Slo
from bench.phases import LevelPlan
from bench.scheduler import Launch
from bench.summary import GeneratorHealth, LevelSummary

Record = Any
"""`RequestRecord` or `AgentRecord`: whatever the target's summaries understand."""


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
