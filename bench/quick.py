"""`make bench`: a short run of every phase against local servers, with one side-by-side report.

    python -m bench.quick [--profiles qwen-a10g,deepseek-pd-a10g,deepseek-a10g] [--time-scale 0.1]
                          [--embedded URL MODEL] [--out bench-results/quick]

Starts the GPU emulator (`python -m backends.emulator`) once per profile, on a free port and sped up
by `--time-scale`, runs `bench/profiles/quick.yaml` against each, and, with `--embedded`, against an
already running embedded model too; then writes every run's folder and one `report.html` comparing
them. The bench talks to each server over HTTP only, as it would to a real deployment.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.outputs.html_report import render_report
from bench.outputs.json_file import load_results

QUICK = Path(__file__).with_name("profiles") / "quick.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


def _served_model(base_url: str) -> str:
    with urllib.request.urlopen(f"{base_url}/models", timeout=10) as response:
        return str(json.loads(response.read())["data"][0]["id"])


def _bench(base_url: str, model: str, label: str, out: Path, extra: list[str]) -> None:
    command = [sys.executable, "-m", "bench", "openai", "--config", str(QUICK), "--base-url", base_url,
               "--model", model, "--label", label, "--out", str(out), *extra]  # fmt: skip
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", default="qwen-a10g,deepseek-pd-a10g,deepseek-a10g")
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--embedded", nargs=2, metavar=("URL", "MODEL"), help="also measure this server")
    parser.add_argument("--out", type=Path, default=Path("bench-results") / "quick")
    args = parser.parse_args()
    # A plain `kill` should still stop the servers this script started (the `finally` blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[Path] = []
    for profile in [p for p in args.profiles.split(",") if p]:
        port = _free_port()
        log = (args.out / f"emulator-{profile}.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "backends.emulator", "--profile", profile, "--port", str(port),
             "--time-scale", f"{args.time_scale:g}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            _wait(f"http://127.0.0.1:{port}/health")
            label = f"{profile} (x{args.time_scale:g})"
            _bench(base_url, _served_model(base_url), label, args.out / profile, [])
            runs.append(args.out / profile)
        finally:
            server.terminate()
            server.wait(15)
            log.close()
    if args.embedded:
        url, model = args.embedded
        _bench(
            url,
            model,
            f"embedded {model}",
            args.out / "embedded",
            ["--concurrency", "1,2,4", "--rates", "0.5,1"],
        )
        runs.append(args.out / "embedded")
    report = args.out / "report.html"
    report.write_text(render_report([load_results(r) for r in runs], "chatstack bench: quick run"))
    print(f"Report: {report}")


if __name__ == "__main__":
    main()
