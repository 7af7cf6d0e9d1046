"""A story draft from any OpenAI-compatible server (Ollama, vLLM, llama.cpp, hosted APIs), asked
for a JSON answer held to the draft's schema (`response_format: json_schema`). The key, if the
server needs one, comes from the environment (STORYMEM_LLM_API_KEY, else OPENAI_API_KEY), never
from a flag. Every failure is one line: nothing answers, a timeout, an HTTP error, an answer that
is not JSON or not a draft of the asked shape. No retries."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from ..errors import InputError

KEY_VARIABLES = ("STORYMEM_LLM_API_KEY", "OPENAI_API_KEY")
TIMEOUT_S = 300


def _request(url: str, payload: dict | None, timeout: float, base: str) -> dict:
    headers = {"Content-Type": "application/json"}
    key = next((os.environ[v] for v in KEY_VARIABLES if os.environ.get(v)), None)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        detail = e.read()[:200].decode(errors="replace").strip()
        raise InputError(f"--llm {base}: the server answered HTTP {e.code} ({detail or e.reason})") from None
    except urllib.error.URLError as e:
        raise InputError(f"--llm {base}: cannot reach the server ({e.reason})") from None
    except TimeoutError:
        raise InputError(f"--llm {base}: no answer within {timeout:.0f} s") from None
    except OSError as e:
        raise InputError(f"--llm {base}: the connection failed ({e.strerror or type(e).__name__})") from None
    try:
        return json.loads(body)
    except ValueError:
        raise InputError(f"--llm {base}: the server's answer is not JSON ({body[:80]!r})") from None


def server_model(base: str, timeout: float = TIMEOUT_S) -> str:
    """The first model the server lists (GET /models), for when none is named."""
    answer = _request(f"{base}/models", None, timeout, base)
    try:
        return answer["data"][0]["id"]
    except (KeyError, IndexError, TypeError):
        raise InputError(f"--llm {base}: the server lists no model (GET /models); name one with --llm-model") from None


def http_draft(
    base: str, messages: list[dict], schema: dict, seed: int, model: str | None = None, timeout: float = TIMEOUT_S
) -> dict:
    """The draft the server writes, parsed (its shape is checked by the caller)."""
    base = base.rstrip("/")
    payload = {
        "model": model or server_model(base, timeout),
        "messages": messages,
        "seed": seed,
        "temperature": 0.7,
        "response_format": {"type": "json_schema", "json_schema": {"name": "story", "schema": schema, "strict": True}},
    }
    answer = _request(f"{base}/chat/completions", payload, timeout, base)
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise InputError(f"--llm {base}: the answer has no choices[0].message.content") from None
    try:
        return json.loads(content)
    except (ValueError, TypeError):
        raise InputError(f"--llm {base}: the model's answer is not JSON ({str(content)[:80]!r})") from None
