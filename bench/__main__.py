"""`python -m bench ...`: the same commands as `chatstack bench ...`."""

from bench.cli import bench_app

bench_app(prog_name="chatstack bench")
