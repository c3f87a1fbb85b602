"""A small OpenAI-compatible server over a local transformers model (``tunesift serve``).

It serves ``POST /v1/chat/completions`` and ``POST /v1/completions`` (greedy or sampled, with
``logprobs``/``top_logprobs`` for completions) and ``GET /v1/models``, so the judge methods can run
against the offline default model through the same HTTP client they use for vLLM, TGI, llama.cpp
or a hosted API, and so the client is tested against a real server on loopback.  One model, one
request at a time (a lock): it is a local back end and a test fixture, not a production server.
``--request-log`` appends one JSON line per answered request (used by the fault tests).

On loopback it answers anyone on the machine.  Bound to any other address it serves only requests
that carry ``Authorization: Bearer $TUNESIFT_API_KEY``, and refuses to start without that variable.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .data.errors import TunesiftError
from .models.loading import LoadedLM

API_KEY_ENV = "TUNESIFT_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False    # a host name other than localhost may resolve to anything


def api_key_for(host: str, environ=os.environ) -> str | None:
    """The key a server on ``host`` must require: none on loopback, else ``$TUNESIFT_API_KEY``."""
    key = environ.get(API_KEY_ENV) or None
    if key is None and not is_loopback(host):
        raise TunesiftError(f"--host {host} is reachable from other machines: set {API_KEY_ENV} to a secret "
                            f"(clients send it as 'Authorization: Bearer <key>'), or serve on 127.0.0.1")
    return key


def _generate(lm: LoadedLM, prompt_ids: list[int], max_tokens: int, temperature: float, top_logprobs: int,
              seed: int | None) -> tuple[list[int], list[dict] | None, str]:
    import torch
    tok, model = lm.tokenizer, lm.model
    dev = next(model.parameters()).device
    ids = torch.tensor([prompt_ids], device=dev)
    g = torch.Generator(device="cpu").manual_seed(seed if seed is not None else 0)
    out, lps, finish = [], [] if top_logprobs >= 0 else None, "length"
    past = None
    with torch.inference_mode():
        for _ in range(max_tokens):
            o = model(input_ids=ids if past is None else ids[:, -1:], past_key_values=past, use_cache=True)
            past = o.past_key_values
            logp = torch.log_softmax(o.logits[0, -1].float(), -1)
            if temperature and temperature > 0:
                nxt = int(torch.multinomial(torch.softmax(logp.cpu() / temperature, -1), 1, generator=g))
            else:
                nxt = int(torch.argmax(logp))
            if lps is not None:
                top = torch.topk(logp, max(top_logprobs, 1))
                lps.append({"token": tok.decode([nxt]), "logprob": float(logp[nxt]),
                            "top_logprobs": {tok.decode([int(i)]): float(v) for v, i in zip(top.values, top.indices)}})
            if nxt == tok.eos_token_id:
                finish = "stop"
                break
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]], device=dev)], 1)
    return out, lps, finish


def make_server(lm: LoadedLM, host: str = "127.0.0.1", port: int = 8000, request_log: str | None = None,
                served_name: str | None = None, api_key: str | None = None) -> ThreadingHTTPServer:
    """``api_key``: required of every request; defaults to ``$TUNESIFT_API_KEY``, which a host other
    than loopback must have."""
    api_key = api_key or api_key_for(host)
    lock = threading.Lock()
    name = served_name or lm.name

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:   # quiet by default
            pass

        def _send(self, code: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if api_key is None:
                return True
            got = self.headers.get("Authorization", "")
            if hmac.compare_digest(got.encode(), f"Bearer {api_key}".encode()):
                return True
            self._send(401, {"error": {"message": "missing or wrong API key (Authorization: Bearer ...)"}})
            return False

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if not self._authorised():
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            except (ValueError, json.JSONDecodeError) as e:
                return self._send(400, {"error": {"message": f"bad JSON: {e}"}})
            route = self.path.rstrip("/")
            if route not in ("/v1/chat/completions", "/v1/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            chat = route.endswith("chat/completions")
            tok = lm.tokenizer
            try:
                if chat:
                    msgs = body["messages"]
                    if getattr(tok, "chat_template", None):
                        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                        ids = tok(text, add_special_tokens=False).input_ids
                    else:
                        ids = tok("\n".join(m["content"] for m in msgs)).input_ids
                else:
                    ids = tok(body["prompt"]).input_ids
            except (KeyError, TypeError) as e:
                return self._send(400, {"error": {"message": f"missing field {e}"}})
            want_lp = body.get("logprobs")
            k = int(body.get("top_logprobs", want_lp if isinstance(want_lp, int) and not isinstance(want_lp, bool) else 0))
            with lock:
                new, lps, finish = _generate(lm, ids, int(body.get("max_tokens", 16)), float(body.get("temperature", 0)),
                                             k if want_lp else -1, body.get("seed"))
            text = tok.decode(new, skip_special_tokens=True)
            usage = {"prompt_tokens": len(ids), "completion_tokens": len(new), "total_tokens": len(ids) + len(new)}
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                if lps is not None:
                    choice["logprobs"] = {"content": [{"token": d["token"], "logprob": d["logprob"],
                                                       "top_logprobs": [{"token": t, "logprob": v}
                                                                        for t, v in d["top_logprobs"].items()]}
                                                      for d in lps]}
                obj = "chat.completion"
            else:
                choice = {"index": 0, "text": text, "finish_reason": finish}
                if lps is not None:
                    choice["logprobs"] = {"tokens": [d["token"] for d in lps],
                                          "token_logprobs": [d["logprob"] for d in lps],
                                          "top_logprobs": [d["top_logprobs"] for d in lps]}
                obj = "text_completion"
            resp = {"id": f"ts-{uuid.uuid4().hex[:12]}", "object": obj, "created": int(time.time()), "model": name,
                    "choices": [choice], "usage": usage}
            self._send(200, resp)
            if request_log:
                with lock, open(request_log, "a") as f:
                    f.write(json.dumps({"route": route, "body": body}) + "\n")

    return ThreadingHTTPServer((host, port), Handler)
