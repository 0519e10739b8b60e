"""The Ray Serve application builders that `configs/*.yaml` import (`import_path`).

They take exactly `ray.serve.llm`'s args (the config files' `args:`), check them (the GPU memory budget of
every engine, the prefill/decode pairing) and then call `ray.serve.llm`'s builder with the same args; a
refused config fails the deploy with the reason instead of failing on the GPU minutes later. Replacing
`backends.serve.builders:` with `ray.serve.llm:` in a config deploys the same app without the checks.

Ray is imported inside the functions: this module runs where Ray Serve runs (the engine virtualenv, a GPU
cluster's head node), never in chatstack's own environment.
"""

from __future__ import annotations

import logging
from typing import Any

from backends.serve.checks import check_pd_args, check_serving_args

log = logging.getLogger("ray.serve")


def build_openai_app(args: dict[str, Any]) -> Any:
    """`ray.serve.llm.build_openai_app(args)` for `LLMServingArgs` data, after the checks."""
    for budget in check_serving_args(args, strict=False):
        log.info("GPU memory budget: %s", budget.explain())
    from ray.serve.llm import build_openai_app as build

    return build(args)


def build_pd_openai_app(args: dict[str, Any]) -> Any:
    """`ray.serve.llm.build_pd_openai_app(args)` for `PDServingArgs` data, after the checks."""
    for budget in check_pd_args(args, strict=False):
        log.info("GPU memory budget: %s", budget.explain())
    from ray.serve.llm import build_pd_openai_app as build

    return build(args)
