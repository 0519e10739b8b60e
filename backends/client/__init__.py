"""How chatstack talks to a model: all of it is in this folder.

- `config.py`: the backends file (named OpenAI-compatible endpoints and how to talk to each);
- `http_client.py`: one streaming client per backend, on a shared aiohttp session;
- `registry.py`: the backends by name, with their polled health;
- `errors.py`: the ways a backend fails, one class each.

The rest of `backends/` are servers, each in a room of its own (the embedded model, the Ray Serve GPU
apps, the GPU emulator, the scripted test backend); nothing here imports them.
"""
