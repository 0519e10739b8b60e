"""A GPU deployment emulator: an OpenAI-compatible server that behaves, in time, like vLLM on GPUs.

Entry points: `backends.emulator.cli.emulate` (the `chatstack emulate` command),
`backends.emulator.app.create_app` (the ASGI app), `python -m backends.emulator`. See docs/emulator.md.
"""
