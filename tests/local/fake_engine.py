"""A stand-in for vLLM's OpenAI server, for tests of the supervisor and of chatstack around it."""

from __future__ import annotations

import textwrap
from pathlib import Path

# A stand-in for `python -m vllm.entrypoints.openai.api_server`: same module path, same --port flag.
# FAKE_MODE: "ok" (healthy after FAKE_DELAY_S), "exit" (dies while starting), "crash_once" (healthy,
# then dies once), "stubborn" (ignores SIGTERM), "escape" (its worker leaves its process group). It starts
# a child "worker", as vLLM does.
FAKE_ENGINE = textwrap.dedent(
    """
    import argparse, http.server, json, os, signal, subprocess, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    args, _ = parser.parse_known_args()
    state = os.environ["FAKE_STATE"]
    starts = len(open(state).read().splitlines()) if os.path.exists(state) else 0
    mode = os.environ.get("FAKE_MODE", "ok")
    RECORDED = ("VLLM_", "HF_", "CHATSTACK_KERNEL_DIR", "CHATSTACK_ENGINE_DECODE_KERNEL")
    # "escape": the worker leads a process group of its own, as Ray's workers do (same session).
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              process_group=0 if mode == "escape" else None)
    with open(state, "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "worker": worker.pid, "argv": sys.argv[1:],
                              "env": {k: v for k, v in os.environ.items() if k.startswith(RECORDED)},
                              "pythonpath": os.environ.get("PYTHONPATH", "")}) + "\\n")
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(os.environ.get("FAKE_DELAY_S", "0.2")))
    if mode == "exit":
        sys.exit(3)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/v1/models":
                body = json.dumps({"object": "list", "data": [{"id": "tiny-instruct"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", args.port), Health)
    if mode == "crash_once" and starts == 0:
        server.timeout = 0.2
        for _ in range(5):
            server.handle_request()
        os._exit(7)
    server.serve_forever()
    """
)


def install_fake_engine(folder: Path) -> Path:
    """`folder` with `vllm/entrypoints/openai/api_server.py` in it: put it on the engine's PYTHONPATH."""
    module = folder / "vllm" / "entrypoints" / "openai"
    module.mkdir(parents=True)
    (module / "api_server.py").write_text(FAKE_ENGINE)
    return folder
