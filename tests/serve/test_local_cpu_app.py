"""The embedded model as a Ray Serve app (`chatstack serve --engine ray`): its data, without Ray."""

from __future__ import annotations

import yaml

from backends.serve.apps import APPS, QWEN, local_cpu_app
from backends.serve.checks import check_app
from backends.serve.local import engine_kwargs_from_cli, parse_args
from backends.serve.render import config_yaml

CPU_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "0,1", "VLLM_CPU_KVCACHE_SPACE": "1"}


def app(**engine_kwargs: object):  # type: ignore[no-untyped-def]
    return local_cpu_app(
        model_id="qwen2.5-coder-0.5b-instruct",
        model_source="/models/qwen",
        port=8001,
        max_model_len=4096,
        tool_call_parser="chatstack_qwen",
        env_vars=CPU_ENV,
        engine_kwargs=engine_kwargs,
    )


def test_the_local_app_is_the_gpu_apps_shape_on_a_cpu() -> None:
    local = app()
    assert (local.name, local.builder, local.import_path) == ("local", "openai", QWEN.import_path)
    (config,) = local.llm_configs()
    assert set(config) <= set(QWEN.llm_configs()[0]) | {"accelerator_config", "runtime_env"}
    assert config["accelerator_config"] == {"kind": "cpu"}
    assert "accelerator_type" not in config, "Ray refuses an accelerator_type with a CPU config"
    assert config["model_loading_config"] == {
        "model_id": "qwen2.5-coder-0.5b-instruct",
        "model_source": "/models/qwen",
    }
    engine = config["engine_kwargs"]
    assert engine["enable_auto_tool_choice"] is True
    assert engine["tool_call_parser"] == "chatstack_qwen"
    assert engine["max_model_len"] == 4096
    assert config["runtime_env"] == {"env_vars": CPU_ENV}
    assert config["deployment_config"]["num_replicas"] == 1
    assert check_app(local) == [], "no GPU, no memory budget; the checks let it through"
    assert "local" not in APPS, "built per machine at start, not a committed config file"


def test_its_config_file_is_a_serve_config() -> None:
    config = yaml.safe_load(config_yaml(app()))
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8001}
    (application,) = config["applications"]
    assert application["import_path"] == "backends.serve.builders:build_openai_app"
    assert application["args"] == app().args


def test_launcher_arguments_and_extra_engine_arguments() -> None:
    options, extra = parse_args(
        ["--model", "/m", "--served-model-name", "x", "--temp-dir", "/t", "--", "--enforce-eager"]
    )
    assert (options.model, options.served_model_name, options.port, options.num_cpus) == ("/m", "x", 8001, 4)
    assert extra == ["--enforce-eager"]
    assert engine_kwargs_from_cli([]) == {}
    assert app(enforce_eager=True).llm_configs()[0]["engine_kwargs"]["enforce_eager"] is True
