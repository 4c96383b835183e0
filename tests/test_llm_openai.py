"""OpenAIChat against a fake OpenAI-compatible HTTP server on 127.0.0.1.

The server is a `http.server.ThreadingHTTPServer` in a thread. Each test scripts the failures it plays before it
answers (429, 500/503, 400, a dropped connection, a reply slower than the client's timeout) and reads back what the
server saw: the number of requests, the request bodies and the most requests that were in flight at once.
"""
import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentlab.llm.base import Usage
from agentlab.llm.openai import LLMError, OpenAIChat

TOOLS = [{"type": "function", "function": {"name": "get_order", "description": "Look up an order.",
          "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}]


class FakeServer:
    """State shared with the request handler: a failure script, a delay, and what was received."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self, script=(), delay=0.0, slow=1.0):
        with self.lock:
            self.script, self.delay, self.slow = list(script), delay, slow
            self.requests, self.in_flight, self.max_in_flight = 0, 0, 0
            self.bodies, self.headers = [], []

    def next_action(self, body, headers):
        with self.lock:
            self.requests += 1
            self.bodies.append(body)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            return self.script.pop(0) if self.script else None


def _completion(body):
    """An OpenAI chat completion answering `body`: a tool call when tools are given, else an echo; `n` choices."""
    n = body.get("n") or 1
    last = body["messages"][-1]
    if body.get("tools") and last["role"] != "tool":
        name = body["tools"][0]["function"]["name"]
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function", "function": {"name": name, "arguments": json.dumps({"order_id": "42"})}}]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": f"echo {last['role']}: {last['content']}"}
        finish = "stop"
    prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": i, "message": message, "finish_reason": finish, "logprobs": None} for i in range(n)],
            "usage": {"prompt_tokens": prompt, "completion_tokens": 3 * n, "total_tokens": prompt + 3 * n}}


def make_handler(state: FakeServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            action = state.next_action(body, dict(self.headers))
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "slow":
                    time.sleep(state.slow)
                elif isinstance(action, int):
                    self._send(action, {"error": {"message": f"scripted {action}", "type": "fake", "param": None, "code": None}})
                    return
                if state.delay:
                    time.sleep(state.delay)
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "fake"}})
                    return
                self._send(200, _completion(body))
            except OSError:  # the client gave up (timeout) and closed the socket
                pass
            finally:
                with state.lock:
                    state.in_flight -= 1

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that hung up is not a test failure
        pass


@pytest.fixture(scope="module")
def fake():
    state = FakeServer()
    httpd = _Server(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def server(fake):
    fake.reset()
    return fake


def client(server, **kwargs):
    opts = dict(base_url=server.base_url, backoff_base=0.01, backoff_max=0.05, jitter_seed=0, timeout=5, max_retries=4)
    return OpenAIChat("fake-model", **{**opts, **kwargs})


USER = [{"role": "user", "content": "where is my order"}]


def test_plain_request(server):
    llm = client(server)
    reply = llm.chat_sync(USER, temperature=0, max_tokens=5, seed=1, stop=["\n"])
    assert reply.text == "echo user: where is my order"
    assert reply.finish_reason == "stop" and reply.model == "fake-model" and not reply.cached
    sent = server.bodies[0]
    assert {k: sent[k] for k in ("model", "temperature", "max_tokens", "seed", "stop")} == \
        {"model": "fake-model", "temperature": 0, "max_tokens": 5, "seed": 1, "stop": ["\n"]}
    assert server.headers[0].get("authorization") == "Bearer EMPTY"


def test_retry_succeeds_after_failures(server):
    server.reset(script=[429, 500, "drop", 503])
    llm = client(server)
    reply = llm.chat_sync(USER)
    assert reply.text == "echo user: where is my order"
    assert server.requests == 5
    assert (llm.n_attempts, llm.n_requests) == (5, 1)


def test_timeout_is_retried(server):
    server.reset(script=["slow"], slow=2.0)
    llm = client(server, timeout=0.3)
    t0 = time.perf_counter()
    reply = llm.chat_sync(USER)
    assert reply.text.startswith("echo user")
    assert server.requests == 2 and llm.n_attempts == 2
    assert time.perf_counter() - t0 < 1.5  # it did not wait for the slow reply


def test_gives_up_after_max_retries(server):
    server.reset(script=[503] * 10)
    llm = client(server, max_retries=2)
    with pytest.raises(LLMError) as info:
        llm.chat_sync(USER)
    err = info.value
    msg = str(err)
    assert server.base_url in msg and "'fake-model'" in msg and "3 attempts" in msg and "503" in msg
    assert (err.attempts, err.status_code, err.url) == (3, 503, server.base_url)
    assert server.requests == 3


def test_gives_up_on_dropped_connections(server):
    server.reset(script=["drop"] * 10)
    llm = client(server, max_retries=1)
    with pytest.raises(LLMError, match=r"failed after 2 attempts; last error: APIConnectionError"):
        llm.chat_sync(USER)
    assert server.requests == 2


def test_no_retry_on_400(server):
    server.reset(script=[400, 400, 400])
    llm = client(server)
    with pytest.raises(LLMError, match=r"failed after 1 attempt \(HTTP 400 is not retried\).*scripted 400") as info:
        llm.chat_sync(USER)
    assert info.value.status_code == 400
    assert server.requests == 1


def test_wrong_path_is_not_retried(server):
    llm = client(server, base_url=server.base_url.replace("/v1", "/nope"))
    with pytest.raises(LLMError, match="HTTP 404 is not retried"):
        llm.chat_sync(USER)
    assert server.requests == 1


def test_concurrency_limit(server):
    server.reset(delay=0.15)
    llm = client(server, max_concurrency=3)

    async def many():
        return await asyncio.gather(*[llm.chat([{"role": "user", "content": f"q{i}"}]) for i in range(9)])

    replies = asyncio.run(many())
    assert [r.text for r in replies] == [f"echo user: q{i}" for i in range(9)]
    assert server.requests == 9
    assert server.max_in_flight == 3


def test_connection_refused_names_url():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAIChat("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_base=0.01, timeout=2)
    with pytest.raises(LLMError, match=rf"at http://127.0.0.1:{port}/v1 failed after 2 attempts.*APIConnectionError"):
        llm.chat_sync(USER)


def test_tool_calls_round_trip(server):
    llm = client(server)
    reply = llm.chat_sync(USER, tools=TOOLS)
    assert reply.finish_reason == "tool_calls" and reply.text is None
    call = reply.tool_calls[0]
    assert call == {"id": "call_abc", "type": "function", "function": {"name": "get_order", "arguments": '{"order_id": "42"}'}}
    assert server.bodies[0]["tools"] == TOOLS
    history = USER + [reply.message, {"role": "tool", "tool_call_id": call["id"], "content": '{"status": "shipped"}'}]
    final = llm.chat_sync(history, tools=TOOLS)
    assert final.text == 'echo tool: {"status": "shipped"}'
    sent = server.bodies[1]["messages"]
    assert sent[1]["tool_calls"][0]["function"] == call["function"] and sent[2]["tool_call_id"] == "call_abc"


def test_n_samples_and_usage(server):
    llm = client(server)
    r1 = llm.chat_sync(USER, n=3, temperature=1.0)
    assert len(r1.choices) == 3 and all(c.text == "echo user: where is my order" for c in r1.choices)
    assert r1.usage == Usage(4, 9)
    r2 = llm.chat_sync([{"role": "user", "content": "hi"}])
    assert r2.usage == Usage(1, 3)
    assert llm.usage_total == Usage(5, 12) and llm.n_requests == 2


def test_cache_hit_avoids_http_and_survives_restart(server, tmp_path):
    llm = client(server, cache_dir=tmp_path / "cache")
    first = llm.chat_sync(USER, tools=TOOLS, temperature=0)
    second = llm.chat_sync(USER, tools=TOOLS, temperature=0)
    assert server.requests == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.tool_calls == first.tool_calls and second.usage == first.usage
    assert (llm.n_requests, llm.n_cached, llm.usage_total) == (1, 1, first.usage)
    fresh = client(server, cache_dir=tmp_path / "cache")
    third = fresh.chat_sync(USER, tools=TOOLS, temperature=0)
    assert third.cached and third.tool_calls == first.tool_calls
    assert server.requests == 1 and fresh.n_requests == 0
    fresh.chat_sync(USER, temperature=0)  # no tools: a different request
    assert server.requests == 2
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_failed_requests_are_not_cached(server, tmp_path):
    server.reset(script=[400])
    llm = client(server, cache_dir=tmp_path)
    with pytest.raises(LLMError):
        llm.chat_sync(USER)
    assert llm.chat_sync(USER).cached is False
    assert server.requests == 2


def test_chat_sync_inside_running_loop_and_aclose(server):
    llm = client(server)

    async def inside():
        r1 = llm.chat_sync(USER)  # runs on a helper thread with its own loop
        r2 = await llm.chat(USER)
        await llm.aclose()
        return r1, r2

    r1, r2 = asyncio.run(inside())
    assert r1.text == r2.text
    assert server.requests == 2
