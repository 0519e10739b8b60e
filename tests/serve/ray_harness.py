"""A Ray Serve cluster for the tests, driven over stdin/stdout; run with the engine virtualenv's Python.

    python -m tests.serve.ray_harness --temp-dir DIR --http-port PORT

starts a local Ray cluster (loopback only, no dashboard, logical GPUs and `accelerator_type:A10G`
resources instead of real ones) and Ray Serve on `PORT`, then answers one JSON command per stdin line
with one stdout line `@@ <json>` (other output is Ray's):

- `{"cmd": "build", "import_path": ..., "args": {...}}`: call a builder the way `serve run` does and
  summarise the application's deployments (or the error).
- `{"cmd": "deploy", "configs": [path, ...]}`: deploy config files through the controller, as
  `serve run config.yaml` does, each app under `/<app name>` (one cluster, one HTTP port); waits
  until every app is RUNNING (or reports why not).
- `{"cmd": "status"}`: every app's status and each deployment's running replica count.

Closing stdin shuts Serve and this Ray cluster down. The engine class is taken from
`RAYLLM_VLLM_ENGINE_CLS` (the test sets the scripted engine), inherited by every Ray worker.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import serve
from ray._common.utils import import_attr
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary, serve_start
from ray.serve._private.build_app import build_app
from ray.serve.schema import ServeDeploySchema

DEPLOY_TIMEOUT_S = 240.0


def reply(payload: dict[str, Any]) -> None:
    sys.stdout.write("@@ " + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def summarise(app: Any, name: str) -> dict[str, Any]:
    built = build_app(app, name=name)
    deployments = {}
    for deployment in built.deployments:
        config = deployment._deployment_config
        replica = deployment._replica_config
        autoscaling = config.autoscaling_config
        options = replica.ray_actor_options or {}
        deployments[deployment.name] = {
            "num_replicas": config.num_replicas,
            "autoscaling": autoscaling.model_dump(
                include={"min_replicas", "initial_replicas", "max_replicas"}
            )
            if autoscaling
            else None,
            "bundles": replica.placement_group_bundles,
            "strategy": replica.placement_group_strategy,
            "env_vars": (options.get("runtime_env") or {}).get("env_vars", {}),
        }
    return {"ingress": built.ingress_deployment_name, "deployments": deployments}


def build(command: dict[str, Any]) -> dict[str, Any]:
    try:
        builder = import_attr(command["import_path"])
        app = call_user_app_builder_with_args_if_necessary(builder, command["args"])
        return {"ok": True, **summarise(app, "build-check")}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def app_status() -> dict[str, Any]:
    status = serve.status()
    apps = {}
    for name, app in status.applications.items():
        apps[name] = {
            "status": str(app.status.value if hasattr(app.status, "value") else app.status),
            "message": app.message,
            "deployments": {
                dname: {
                    "status": str(d.status.value if hasattr(d.status, "value") else d.status),
                    "running": int(d.replica_states.get("RUNNING", 0)),
                    "message": d.message,
                }
                for dname, d in app.deployments.items()
            },
        }
    return apps


def deploy(client: Any, command: dict[str, Any]) -> dict[str, Any]:
    applications = []
    for path in command["configs"]:
        config = yaml.safe_load(Path(path).read_text())
        for app in config["applications"]:
            applications.append({**app, "route_prefix": f"/{app['name']}"})
    client.deploy_apps(ServeDeploySchema.model_validate({"applications": applications}))
    names = [app["name"] for app in applications]
    deadline = time.monotonic() + float(command.get("timeout_s", DEPLOY_TIMEOUT_S))
    while time.monotonic() < deadline:
        apps = app_status()
        states = {name: apps.get(name, {}).get("status") for name in names}
        if any(state == "DEPLOY_FAILED" for state in states.values()):
            return {"ok": False, "error": "deploy failed", "apps": apps}
        if all(state == "RUNNING" for state in states.values()):
            return {"ok": True, "apps": apps}
        time.sleep(0.5)
    return {
        "ok": False,
        "error": f"not RUNNING after {command.get('timeout_s', DEPLOY_TIMEOUT_S)} s",
        "apps": app_status(),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--num-cpus", type=int, default=8)
    parser.add_argument("--num-gpus", type=int, default=8)
    options = parser.parse_args()
    started = time.monotonic()
    ray.init(
        num_cpus=options.num_cpus,
        num_gpus=options.num_gpus,
        resources={"accelerator_type:A10G": options.num_gpus},
        include_dashboard=False,
        _temp_dir=options.temp_dir,
        _node_ip_address="127.0.0.1",
        object_store_memory=100 * 1024 * 1024,
        namespace="serve",
        log_to_driver=False,
    )
    try:
        client = serve_start(http_options={"host": "127.0.0.1", "port": options.http_port})
        reply({"ready": True, "started_s": round(time.monotonic() - started, 1)})
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            try:
                if command["cmd"] == "build":
                    reply(build(command))
                elif command["cmd"] == "deploy":
                    reply(deploy(client, command))
                elif command["cmd"] == "status":
                    reply({"ok": True, "apps": app_status()})
                else:
                    reply({"ok": False, "error": f"unknown command {command['cmd']!r}"})
            except Exception:
                reply({"ok": False, "error": traceback.format_exc()})
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
