"""The production GPU deployments: Ray Serve + vLLM apps built with `ray.serve.llm` (see docs/ray-serve.md).

- `budget`: GPU memory arithmetic (weights + KV cache + reserve per GPU), pure Python.
- `apps`: the four apps (`qwen`, `qwen-serverless`, `deepseek-pd`, `deepseek`) as plain data.
- `checks`: what every app must satisfy before it is rendered or deployed (budget, P/D pairing).
- `render`: `python -m backends.serve.render` writes `configs/<app>.yaml` for `serve run` / `serve deploy`.
- `builders`: the `import_path` targets of those files; they import Ray, so they run only where Ray is
  installed (the engine virtualenv, a GPU cluster), never in chatstack's own environment.
"""
