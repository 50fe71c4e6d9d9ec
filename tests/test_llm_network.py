"""The gateway contacts nothing but the configured api_base (no telemetry, no downloads).

A fresh interpreter (so litellm's import-time behaviour is included) records every
socket connection and name lookup through Python's audit hooks while it imports the
gateway and makes plain and streamed calls, with the price map and the prompt-token
estimate in use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.stub_llm import STUB_API_KEY, STUB_KEY_ENV, StubLLM

CHILD = r"""
import json, os, sys

events = []

def hook(event, args):
    if event == "socket.connect":
        events.append(["connect", list(args[1]) if isinstance(args[1], tuple) else str(args[1])])
    elif event == "socket.getaddrinfo":
        events.append(["getaddrinfo", str(args[0]), args[1]])

sys.addaudithook(hook)

from daedalus.tools.llm import LLMConfig, LLMGateway

config = LLMConfig(model="openai/gpt-4o", api_base=os.environ["STUB_URL"],
                   api_key_env=os.environ["STUB_KEY_ENV"], max_retries=0)
gateway = LLMGateway(config)
messages = [{"role": "user", "content": "hello"}]
plain = gateway.complete(messages, max_cost_usd=1.0)
streamed = gateway.complete(messages, max_cost_usd=1.0, on_delta=lambda text: None)
print(json.dumps({"events": events, "texts": [plain.text, streamed.text],
                  "costs": [plain.cost_usd, streamed.cost_usd]}))
"""


def test_only_the_configured_api_base_is_contacted() -> None:
    with StubLLM(["plain reply", "streamed reply"]) as stub:
        env = {**os.environ, "STUB_URL": stub.url, "STUB_KEY_ENV": STUB_KEY_ENV,
               STUB_KEY_ENV: STUB_API_KEY}
        for var in ("LITELLM_LOCAL_MODEL_COST_MAP", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                    "http_proxy", "https_proxy", "all_proxy"):
            env.pop(var, None)  # the gateway must switch litellm offline by itself
        done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        port = stub.port
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["texts"] == ["plain reply", "streamed reply"]
    assert all(cost > 0 for cost in report["costs"])  # gpt-4o is in the bundled price map
    connects = [e for e in report["events"] if e[0] == "connect"]
    lookups = [e for e in report["events"] if e[0] == "getaddrinfo"]
    assert connects, "the child made no connection at all; the test would prove nothing"
    assert all(e[1] == ["127.0.0.1", port] for e in connects), connects
    assert all(e[1] == "127.0.0.1" for e in lookups), lookups
