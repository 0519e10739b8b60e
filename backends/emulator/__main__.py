"""python -m backends.emulator --profile qwen-a10g [--port 8300] [--time-scale 0.1]"""

from __future__ import annotations

import typer

from backends.emulator.cli import emulate


def main() -> None:
    typer.run(emulate)


if __name__ == "__main__":
    main()
