"""Host the embedded model on Ray Serve, on this machine's CPU: what `chatstack serve --engine ray` runs.

    python -m backends.serve.local --model DIR --served-model-name NAME --port 8001 --temp-dir DIR [...]

Run by the engine virtualenv's Python (Ray and vLLM live there), started and supervised by
`backends.local.engine.EngineSupervisor` exactly like the plain vLLM engine. It starts a one-node Ray
cluster (loopback only, no dashboard, its temp dir under chatstack's data dir), runs the `local` app
(`apps.local_cpu_app`, built by `builders.build_openai_app`, the builder the GPU apps' config files
import) the way `serve run` does, writes that app's config file beside it for reference, and blocks until
SIGTERM or SIGINT; then it shuts the Ray cluster (and Serve with it) down. It exits non-zero when the app
cannot deploy or fails later, so the supervisor restarts it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from backends.serve.apps import LOCAL_APP_NAME, LOCAL_CPU_RAY_CPUS, local_cpu_app
from backends.serve.render import config_yaml

VLLM_CPU_ENV = ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_CPU_KVCACHE_SPACE")
"""vLLM's CPU settings, set by the supervisor in this process's environment and passed on to the app's
runtime env, so the model server and its engine workers run as the plain engine does."""
MAX_TEMP_DIR_CHARS = 44
"""Ray puts Unix sockets under `<temp>/session_<date>_<pid>/sockets/` and refuses paths over 107 bytes."""
WATCH_EVERY_S = 5.0
FAILED_STATES = {"DEPLOY_FAILED", "UNHEALTHY"}
UNHEALTHY_GRACE_S = 300.0
"""Serve restarts a crashed replica itself (the app is UNHEALTHY meanwhile); only an app that stays
unhealthy this long, or fails to deploy, ends this process."""


HEALTH_APP_NAME = "local-health"
HEALTH_CHECK_TIMEOUT_S = 10.0


class Health:
    """`GET /health`, as vLLM's own server answers it: 200 once the model server is up, 503 when its
    engine fails its health check.

    Deployed only after the `local` app is RUNNING: Ray's OpenAI ingress answers `/v1/models` a minute
    before the model is loaded (it lists the configured models without asking the model server), so the
    supervisor and a user's health checks need this to know when the model can answer.
    """

    def __init__(self, server_deployment: str) -> None:
        from ray import serve

        self._server = serve.get_deployment_handle(server_deployment, app_name=LOCAL_APP_NAME)

    async def __call__(self, request: Any) -> Any:
        import asyncio

        from starlette.responses import PlainTextResponse

        try:
            await asyncio.wait_for(self._server.check_health.remote(), HEALTH_CHECK_TIMEOUT_S)
        except Exception as exc:
            return PlainTextResponse(f"unhealthy: {type(exc).__name__}: {exc}", status_code=503)
        return PlainTextResponse("ok")


def server_deployment(serve: Any) -> str:
    """The name of the `local` app's model server deployment (Ray derives it from the model id)."""
    deployments = serve.status().applications[LOCAL_APP_NAME].deployments
    (name,) = (name for name in deployments if name.startswith("LLMServer"))
    return str(name)


class Stop(Exception):
    """SIGTERM or SIGINT: shut down."""


def _stop(signum: int, frame: FrameType | None) -> NoReturn:
    raise Stop(signal.Signals(signum).name)


def say(message: str) -> None:
    print(f"chatstack ray launcher: {message}", flush=True)


def engine_kwargs_from_cli(extra: Sequence[str]) -> dict[str, Any]:
    """`vllm serve` arguments (`CHATSTACK_ENGINE_EXTRA_ARGS`, e.g. `--enforce-eager`) as the engine kwargs
    Ray's `LLMConfig` takes, parsed by vLLM's own parser: only the arguments given, with vLLM's types."""
    if not extra:
        return {}
    from vllm.entrypoints.launchers.cli_args import make_arg_parser  # type: ignore[import-not-found]
    from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found]

    parser = make_arg_parser(FlexibleArgumentParser())
    defaults = vars(parser.parse_args([]))
    given = vars(parser.parse_args(list(extra)))
    return {key: value for key, value in given.items() if value != defaults.get(key)}


def short_temp_dir(wanted: Path) -> Path:
    """`wanted`, or a short directory under the system temp dir when `wanted` is too long for Ray."""
    if len(str(wanted)) <= MAX_TEMP_DIR_CHARS:
        wanted.mkdir(parents=True, exist_ok=True)
        return wanted
    short = Path(tempfile.mkdtemp(prefix="chatstack-ray-"))
    say(f"{wanted} is too long for Ray's socket paths; using {short}")
    return short


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m backends.serve.local", description=__doc__)
    parser.add_argument("--model", required=True, help="the model folder (or hub id) vLLM loads")
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--tool-call-parser", default="chatstack_qwen")
    parser.add_argument("--temp-dir", type=Path, required=True, help="Ray's temp dir (logs, sockets)")
    parser.add_argument("--num-cpus", type=int, default=LOCAL_CPU_RAY_CPUS, help="logical CPUs for Ray")
    parser.add_argument("--config-out", type=Path, help="write the app's Ray Serve config file here")
    # Whatever follows `--` is `vllm serve` arguments (CHATSTACK_ENGINE_EXTRA_ARGS).
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    return parser.parse_args(argv), extra


def app_status(serve: Any) -> tuple[str, str]:
    app = serve.status().applications.get(LOCAL_APP_NAME)
    if app is None:
        return "NOT_FOUND", ""
    status = getattr(app.status, "value", app.status)
    return str(status), str(app.message or "")


def main(argv: Sequence[str] | None = None) -> int:
    options, extra = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    app = local_cpu_app(
        model_id=options.served_model_name,
        model_source=options.model,
        port=options.port,
        max_model_len=options.max_model_len,
        tool_call_parser=options.tool_call_parser,
        env_vars={name: os.environ[name] for name in VLLM_CPU_ENV if name in os.environ},
        engine_kwargs=engine_kwargs_from_cli(extra),
    )
    if options.config_out is not None:
        options.config_out.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# {app.name}: {app.summary}.\n"
            "# Written by `python -m backends.serve.local` (chatstack serve --engine ray) when it last\n"
            "# started, for reference: `serve run` takes it as is (with the checkout on PYTHONPATH).\n"
        )
        options.config_out.write_text(header + config_yaml(app))
        say(f"app config: {options.config_out}")

    import ray
    from ray import serve

    from backends.serve.builders import build_openai_app

    started = time.monotonic()
    temp_dir = short_temp_dir(options.temp_dir)
    try:
        ray.init(
            num_cpus=options.num_cpus,
            include_dashboard=False,
            _temp_dir=str(temp_dir),
            _node_ip_address="127.0.0.1",
            object_store_memory=100 * 1024 * 1024,
            namespace="chatstack",
            log_to_driver=True,
        )
        # ray.init installs a SIGTERM handler that tears the node down and exits; shut Serve down first.
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        say(f"Ray up in {time.monotonic() - started:.0f} s (temp dir {temp_dir})")
        serve.start(http_options={"host": options.host, "port": options.port})
        serve.run(build_openai_app(dict(app.args)), name=LOCAL_APP_NAME, route_prefix="/")
        health = serve.deployment(Health, name="Health", num_replicas=1, ray_actor_options={"num_cpus": 0})
        serve.run(health.bind(server_deployment(serve)), name=HEALTH_APP_NAME, route_prefix="/health")
        say(f"app {LOCAL_APP_NAME} RUNNING at http://{options.host}:{options.port}/v1 "
            f"({time.monotonic() - started:.0f} s)")  # fmt: skip
        unhealthy_since: float | None = None
        while True:
            time.sleep(WATCH_EVERY_S)
            status, message = app_status(serve)
            if status == "DEPLOY_FAILED" or status == "NOT_FOUND":
                say(f"app {LOCAL_APP_NAME} is {status}: {message}")
                return 1
            if status in FAILED_STATES:
                unhealthy_since = unhealthy_since or time.monotonic()
                if time.monotonic() - unhealthy_since > UNHEALTHY_GRACE_S:
                    say(f"app {LOCAL_APP_NAME} unhealthy for {UNHEALTHY_GRACE_S:.0f} s: {message}")
                    return 1
            else:
                unhealthy_since = None
    except Stop as stop:
        say(f"{stop}: shutting Ray and Serve down")
        return 0
    finally:
        # A second signal during shutdown must not cut it short: the supervisor SIGKILLs the session later.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Not serve.shutdown(): it drains each replica gracefully (over 20 s on a busy two-core machine,
        # longer than the supervisor waits), which buys nothing when the whole cluster goes. Ending the
        # cluster ends the controller, the proxy and the replicas with it.
        stopping = time.monotonic()
        ray.shutdown()
        say(f"stopped (Ray shut down in {time.monotonic() - stopping:.1f} s)")


if __name__ == "__main__":
    raise SystemExit(main())
