"""The OpenAI-compatible server over real HTTP on 127.0.0.1, driven by the official `openai` client, by
`agentlab.llm.openai.OpenAIChat` and by raw `httpx`.

Two servers run for the module: one with rule-based models (deterministic answers, a slow async model for the
concurrency check, a slow *blocking* model to show the HTTP loop never blocks) and one with a tiny random-weight
Hugging Face model through `agentlab.llm.hf.HFChat`. Covered: plain text, tool-call round trips, `n`, `stop`,
`max_tokens`, 16 concurrent requests, every error case (malformed JSON, unknown model, bad role, oversize body,
`n=0`, unknown parameter, streaming, unknown route), `serve()` in a subprocess, and shutdown releasing the port.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from agentlab.llm.base import ChatModel, RuleChat, get_rule
from agentlab.serve.server import start_server

ROOT = Path(__file__).resolve().parents[1]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
HI = [{"role": "user", "content": "hello there"}]


async def slow_async(messages, tools=None, **gen):
    await asyncio.sleep(0.25)
    return "slept"


def slow_blocking(messages, tools=None, **gen):
    time.sleep(float(messages[-1]["content"]))
    return "woke"


class Flaky:
    "Fails (-> HTTP 500) the first `failures` calls for each distinct user message, then echoes it."
    def __init__(self, failures: int):
        self.failures, self.calls = failures, {}
    def __call__(self, messages, tools=None, **gen):
        key = messages[-1]["content"]
        self.calls[key] = self.calls.get(key, 0) + 1
        if self.calls[key] <= self.failures:
            raise RuntimeError(f"transient failure {self.calls[key]}")
        return key


def run(coro):
    return asyncio.run(coro)


def aclient(server, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0, timeout=30, **kw)


@pytest.fixture(scope="module")
def rule_server():
    models = {"echo": get_rule("echo"), "call-first-tool": get_rule("call-first-tool"),
              "json-echo": get_rule("json-echo"), "slow-async": RuleChat(slow_async, name="slow-async"),
              "slow-blocking": RuleChat(slow_blocking, name="slow-blocking"),
              "flaky": RuleChat(Flaky(2), name="flaky")}
    with start_server(models, max_request_bytes=100_000) as server:
        yield server


@pytest.fixture(scope="module")
def http(rule_server):
    with httpx.Client(base_url=rule_server.base_url, timeout=30) as client:
        yield client


# ---------------------------------------------------------------- the official openai client, rule models

def test_models_list(rule_server):
    async def main():
        async with aclient(rule_server) as client:
            models = await client.models.list()
            one = await client.models.retrieve("call-first-tool")
            return [m.id for m in models.data], one.id
    ids, one = run(main())
    assert ids == ["echo", "call-first-tool", "json-echo", "slow-async", "slow-blocking", "flaky"]
    assert one == "call-first-tool"


def test_plain_text(rule_server):
    async def main():
        async with aclient(rule_server) as client:
            return await client.chat.completions.create(model="echo", messages=HI)
    r = run(main())
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "echo"
    assert r.created > 0
    assert len(r.choices) == 1
    assert r.choices[0].index == 0
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "hello there"
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0


def test_generation_parameters_reach_the_model(rule_server):
    async def main():
        async with aclient(rule_server) as client:
            return await client.chat.completions.create(
                model="json-echo", messages=HI, temperature=0.7, top_p=0.9, max_tokens=12, seed=3, stop=["END"])
    seen = json.loads(run(main()).choices[0].message.content)
    assert seen["generation"] == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 12, "seed": 3, "stop": ["END"]}


def test_tool_call_round_trip(rule_server):
    async def main():
        async with aclient(rule_server) as client:
            messages = [{"role": "user", "content": "Weather in Paris?"}]
            first = await client.chat.completions.create(model="call-first-tool", messages=messages, tools=[WEATHER],
                                                         tool_choice="auto")
            choice = first.choices[0]
            messages.append(choice.message.model_dump(exclude_none=True))
            for call in choice.message.tool_calls:
                messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp": 21})})
            second = await client.chat.completions.create(model="call-first-tool", messages=messages, tools=[WEATHER])
            none = await client.chat.completions.create(model="call-first-tool", messages=messages[:1],
                                                        tools=[WEATHER], tool_choice="none")
            return choice, second, none
    choice, second, none = run(main())
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "x"}
    assert second.choices[0].message.content == "done" and second.choices[0].finish_reason == "stop"
    assert none.choices[0].finish_reason == "stop" and not none.choices[0].message.tool_calls


def test_n_stop_and_max_tokens(rule_server):
    long = [{"role": "user", "content": "one two three four. five six seven"}]
    async def main():
        async with aclient(rule_server) as client:
            many = await client.chat.completions.create(model="echo", messages=long, n=3)
            stopped = await client.chat.completions.create(model="echo", messages=long, stop=".")
            short = await client.chat.completions.create(model="echo", messages=long, max_tokens=2)
            short2 = await client.chat.completions.create(model="echo", messages=long, max_completion_tokens=3)
            return many, stopped, short, short2
    many, stopped, short, short2 = run(main())
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert {c.message.content for c in many.choices} == {"one two three four. five six seven"}
    assert stopped.choices[0].message.content == "one two three four"
    assert short.choices[0].message.content == "one two"
    assert short2.choices[0].message.content == "one two three"


def test_sixteen_concurrent_requests(rule_server):
    """Each request sleeps 0.25 s on an async model; 16 in parallel must overlap, not queue."""
    async def main():
        async with aclient(rule_server) as client:
            t0 = time.perf_counter()
            replies = await asyncio.gather(*[
                client.chat.completions.create(model="slow-async", messages=[{"role": "user", "content": str(i)}])
                for i in range(16)])
            echoes = await asyncio.gather(*[
                client.chat.completions.create(model="echo", messages=[{"role": "user", "content": f"msg {i}"}])
                for i in range(16)])
            return replies, echoes, time.perf_counter() - t0
    replies, echoes, elapsed = run(main())
    assert [r.choices[0].message.content for r in replies] == ["slept"] * 16
    assert [r.choices[0].message.content for r in echoes] == [f"msg {i}" for i in range(16)]
    assert elapsed < 16 * 0.25 / 2, elapsed


def test_keepalive_latency_has_no_nagle_delay(http):
    """Requests on one keep-alive connection answer in ~1 ms; without TCP_NODELAY they take ~40 ms each."""
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        assert http.post("/chat/completions", json={"model": "echo", "messages": HI}).status_code == 200
        times.append(time.perf_counter() - t0)
    assert sorted(times)[len(times) // 2] < 0.03, times


def test_blocking_model_does_not_block_the_server(rule_server, http):
    """A model that blocks its thread (like `generate`) delays only its own requests."""
    async def main():
        async with httpx.AsyncClient(base_url=rule_server.base_url, timeout=30) as client:
            slow = asyncio.create_task(client.post("/chat/completions", json={
                "model": "slow-blocking", "messages": [{"role": "user", "content": "1.0"}]}))
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            quick = await client.post("/chat/completions", json={"model": "echo", "messages": HI})
            quick_s = time.perf_counter() - t0
            return (await slow), quick, quick_s
    slow, quick, quick_s = run(main())
    assert slow.status_code == 200 and slow.json()["choices"][0]["message"]["content"] == "woke"
    assert quick.status_code == 200 and quick_s < 0.5, quick_s


# ---------------------------------------------------------------- errors

def _error(r: httpx.Response, status: int, param=None, code=None) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code
    assert err["message"]
    return err["message"]


def test_malformed_json(http):
    msg = _error(http.post("/chat/completions", content=b'{"model": "echo", "messages": [',
                           headers={"content-type": "application/json"}), 400, code="invalid_json")
    assert "could not parse the JSON body" in msg
    _error(http.post("/chat/completions", content=b"\xff\xfe garbage"), 400)
    assert "must be a JSON object" in _error(http.post("/chat/completions", json=[1, 2]), 400)
    _error(http.post("/chat/completions", content=b""), 400)


def test_unknown_model(http, rule_server):
    msg = _error(http.post("/chat/completions", json={"model": "gpt-9", "messages": HI}), 404, "model", "model_not_found")
    assert "gpt-9" in msg and "echo" in msg
    _error(http.get("/models/gpt-9"), 404, "model", "model_not_found")
    async def main():
        async with aclient(rule_server) as client:
            await client.chat.completions.create(model="gpt-9", messages=HI)
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        run(main())


@pytest.mark.parametrize("messages, fragment", [
    ([{"role": "robot", "content": "hi"}], "role must be one of"),
    ([{"role": "user"}], "has no content"),
    ([{"role": "tool", "tool_call_id": "call_x", "content": "1"}], "does not match any tool call"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}], "needs content or tool_calls"),
    ("not a list", "messages"),
    ([], "messages"),
])
def test_bad_messages(http, messages, fragment):
    msg = _error(http.post("/chat/completions", json={"model": "echo", "messages": messages}), 400, "messages")
    assert fragment in msg, msg


@pytest.mark.parametrize("extra, param", [
    ({"n": 0}, "n"), ({"n": 17}, "n"), ({"n": "2"}, "n"), ({"n": True}, "n"),
    ({"temperature": 2.5}, "temperature"), ({"temperature": -0.1}, "temperature"), ({"temperature": "hot"}, "temperature"),
    ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": 1.5}, "max_tokens"), ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ({"stop": ["a", 1]}, "stop[1]"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"stop": ""}, "stop"),
    ({"seed": "x"}, "seed"),
    ({"stream": True}, "stream"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].function.name"),
    ({"max_token": 5}, "max_token"),
    ({"model": 7}, "model"),
])
def test_bad_parameters(http, extra, param):
    body = {"model": "echo", "messages": HI, **extra}
    _error(http.post("/chat/completions", json=body), 400, param)


def test_bad_parameters_through_openai_client(rule_server):
    async def main(**kw):
        async with aclient(rule_server) as client:
            await client.chat.completions.create(model="echo", **kw)
    with pytest.raises(openai.BadRequestError, match="role must be one of"):
        run(main(messages=[{"role": "robot", "content": "hi"}]))
    with pytest.raises(openai.BadRequestError, match="n: "):
        run(main(messages=HI, n=0))


def test_oversize_request(http):
    big = {"model": "echo", "messages": [{"role": "user", "content": "x" * 200_000}]}
    msg = _error(http.post("/chat/completions", json=big), 413, code="request_too_large")
    assert "100000" in msg
    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(30):
            yield b"x" * 10_000
    _error(http.post("/chat/completions", content=chunks()), 413, code="request_too_large")
    assert http.post("/chat/completions", json={"model": "echo", "messages": HI}).status_code == 200


def test_unknown_route_and_method(http):
    _error(http.get("/nowhere"), 404, code="not_found")
    _error(http.get("/chat/completions"), 405, code="method_not_allowed")
    assert http.get(http.base_url.copy_with(path="/health")).json()["status"] == "ok"


def test_failing_model_gives_500_body_and_server_survives():
    def broken(messages, tools=None, **gen):
        raise RuntimeError("GPU on fire")
    class NotAReply(ChatModel):
        name = "weird"
        async def chat(self, messages, tools=None, **gen):
            return "not a ChatReply"
    with start_server([RuleChat(broken, name="broken"), NotAReply(), get_rule("echo")]) as server:
        for model, fragment in [("broken", "GPU on fire"), ("weird", "not a ChatReply")]:
            r = httpx.post(f"{server.base_url}/chat/completions", json={"model": model, "messages": HI})
            assert r.status_code == 500
            assert r.json()["error"]["type"] == "server_error" and fragment in r.json()["error"]["message"]
        assert httpx.post(f"{server.base_url}/chat/completions", json={"model": "echo", "messages": HI}).status_code == 200


# ---------------------------------------------------------------- lifecycle

def test_stop_releases_the_port():
    server = start_server(get_rule("echo"))
    port = server.port
    assert httpx.get(f"{server.base_url}/models").status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    with socket.socket() as s:  # the port can be bound again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_serve_in_a_subprocess(tmp_path):
    pytest.importorskip("agentlab.llm.factory")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"from agentlab.serve.server import serve; serve(['rule:echo', 'tool=rule:call-first-tool'], port={port}, log_level='warning')"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ids = [m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).json()["data"]]
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert ids == ["rule:echo", "tool"]
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "rule:echo", "messages": HI})
        assert r.json()["choices"][0]["message"]["content"] == "hello there"
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------- agentlab's own client: OpenAIChat

def test_openaichat_over_http(rule_server):
    oai = pytest.importorskip("agentlab.llm.openai")
    async def main():
        echo = oai.OpenAIChat("echo", base_url=rule_server.base_url, max_retries=1)
        tool = oai.OpenAIChat("call-first-tool", base_url=rule_server.base_url, max_retries=1)
        try:
            text = await echo.chat(HI)
            many = await echo.chat([{"role": "user", "content": "a b c. d"}], n=3, stop=["."], max_tokens=5)
            messages = [{"role": "user", "content": "Weather in Paris?"}]
            first = await tool.chat(messages, tools=[WEATHER])
            messages.append(first.message)
            messages.append({"role": "tool", "tool_call_id": first.tool_calls[0]["id"], "content": "21"})
            second = await tool.chat(messages, tools=[WEATHER])
            burst = await asyncio.gather(*[echo.chat([{"role": "user", "content": f"m{i}"}]) for i in range(16)])
            return text, many, first, second, burst
        finally:
            await echo.aclose()
            await tool.aclose()
    text, many, first, second, burst = run(main())
    assert text.text == "hello there" and text.finish_reason == "stop" and text.usage.total_tokens > 0
    assert [c.text for c in many.choices] == ["a b c"] * 3
    assert first.finish_reason == "tool_calls"
    assert first.tool_calls[0]["function"]["name"] == "get_weather"
    assert json.loads(first.tool_calls[0]["function"]["arguments"]) == {"city": "x"}
    assert second.text == "done"
    assert [r.text for r in burst] == [f"m{i}" for i in range(16)]


def test_openaichat_errors(rule_server):
    oai = pytest.importorskip("agentlab.llm.openai")
    async def main(model, messages, **gen):
        chat = oai.OpenAIChat(model, base_url=rule_server.base_url, max_retries=1, backoff_base=0.01)
        try:
            return await chat.chat(messages, **gen)
        finally:
            await chat.aclose()
    with pytest.raises(oai.LLMError, match="gpt-9") as e404:
        run(main("gpt-9", HI))
    assert e404.value.status_code == 404 and e404.value.attempts == 1  # 4xx: not retried
    with pytest.raises(oai.LLMError, match="role must be one of") as e400:
        run(main("echo", [{"role": "robot", "content": "hi"}]))
    assert e400.value.status_code == 400


def test_openaichat_retries_server_errors(rule_server):
    """The `flaky` model fails twice per message with HTTP 500: 3 attempts succeed, 2 attempts give LLMError."""
    oai = pytest.importorskip("agentlab.llm.openai")
    async def main(content, max_retries):
        chat = oai.OpenAIChat("flaky", base_url=rule_server.base_url, max_retries=max_retries, backoff_base=0.01)
        try:
            return await chat.chat([{"role": "user", "content": content}])
        finally:
            await chat.aclose()
    assert run(main("third time lucky", max_retries=2)).text == "third time lucky"
    with pytest.raises(oai.LLMError, match="transient failure 2") as err:
        run(main("gives up", max_retries=1))
    assert err.value.status_code == 500 and err.value.attempts == 2


# ---------------------------------------------------------------- a tiny Hugging Face model behind the server

@pytest.fixture(scope="module")
def tiny_server(tiny_cache):
    hf = pytest.importorskip("agentlab.llm.hf")
    from agentlab.models.tiny import tiny_model_path
    path = tiny_model_path("llama-tiny", seed=0, cache_dir=tiny_cache)
    model = hf.HFChat(str(path), max_new_tokens=8, name="tiny")
    with start_server({"tiny": model}) as server:
        yield server


def test_tiny_plain_and_usage(tiny_server):
    async def main():
        async with aclient(tiny_server) as client:
            greedy = await client.chat.completions.create(model="tiny", messages=HI, max_tokens=6, temperature=0)
            again = await client.chat.completions.create(model="tiny", messages=HI, max_tokens=6, temperature=0)
            return greedy, again
    greedy, again = run(main())
    c = greedy.choices[0]
    assert isinstance(c.message.content, str) or c.message.tool_calls
    assert c.finish_reason in ("stop", "length", "tool_calls")
    assert greedy.usage.prompt_tokens > 0
    assert 0 < greedy.usage.completion_tokens <= 6
    assert again.choices[0].message.content == c.message.content  # greedy decoding is deterministic


def test_tiny_n_stop_seed_and_tools(tiny_server):
    async def main():
        async with aclient(tiny_server) as client:
            many = await client.chat.completions.create(model="tiny", messages=HI, n=3, max_tokens=5,
                                                        temperature=1.0, seed=7)
            same = await client.chat.completions.create(model="tiny", messages=HI, n=3, max_tokens=5,
                                                        temperature=1.0, seed=7)
            stopped = await client.chat.completions.create(model="tiny", messages=HI, max_tokens=8, stop=["e", "a", " "])
            tools = await client.chat.completions.create(
                model="tiny", tools=[WEATHER], max_tokens=5,
                messages=[{"role": "user", "content": "Weather in Paris?"},
                          {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                           "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                          {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'}])
            return many, same, stopped, tools
    many, same, stopped, tools = run(main())
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert [c.message.content for c in many.choices] == [c.message.content for c in same.choices]  # seeded
    text = stopped.choices[0].message.content or ""
    assert not any(s in text for s in ["e", "a", " "]), text
    assert tools.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_tiny_sixteen_concurrent_requests(tiny_server):
    async def main():
        async with aclient(tiny_server) as client:
            return await asyncio.gather(*[
                client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"q {i}"}],
                                               max_tokens=4)
                for i in range(16)])
    worker = tiny_server.app.state.workers["tiny"]
    before = len(worker.batch_sizes)
    replies = run(main())
    assert len(replies) == 16
    assert all(r.choices[0].finish_reason in ("stop", "length", "tool_calls") for r in replies)
    sizes = worker.batch_sizes[before:]
    assert sum(sizes) == 16 and max(sizes) > 1, sizes  # concurrent requests were batched into shared generate calls


def test_tiny_through_openaichat(tiny_server):
    oai = pytest.importorskip("agentlab.llm.openai")
    async def main():
        chat = oai.OpenAIChat("tiny", base_url=tiny_server.base_url, max_retries=1)
        try:
            return await chat.chat(HI, max_tokens=4, n=2)
        finally:
            await chat.aclose()
    reply = run(main())
    assert len(reply.choices) == 2 and reply.usage.completion_tokens > 0
