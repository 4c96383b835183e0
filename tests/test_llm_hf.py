"""HFChat through the model factory, on the tiny offline models (agentlab.models.tiny)."""
import subprocess
import sys
import threading

import pytest

from agentlab.core.messages import make_tool_call, tool_message, tool_schema, validate_messages
from agentlab.llm.base import run_sync
from agentlab.llm.factory import get_model

torch = pytest.importorskip("torch")


def get_weather(city: str,  # name of the city
                unit: str = "celsius"):  # celsius or fahrenheit
    "Get the current weather for a city."


TOOLS = [tool_schema(get_weather)]
CONV = [{"role": "system", "content": "You are a helpful travel agent."},
        {"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def tiny(tiny_cache):
    return get_model("tiny:llama-tiny", cache_dir=tiny_cache, max_new_tokens=12)


def test_factory_import_is_light():
    code = ("import sys, agentlab.llm.factory as f; f.get_model('rule:echo'); "
            "print(sorted(m for m in ('torch', 'transformers', 'openai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_tiny_spec_builds_hfchat(tiny, tiny_cache):
    assert type(tiny).__name__ == "HFChat" and tiny.name == "tiny:llama-tiny"
    assert (tiny_cache / "tiny" / "llama-tiny-s0").is_dir()
    reply = tiny.chat_sync(CONV)
    assert reply.model == "tiny:llama-tiny"
    assert reply.usage.prompt_tokens > 10 and 1 <= reply.usage.completion_tokens <= 12
    assert reply.finish_reason in ("stop", "length") and reply.raw == {"parse_errors": []}
    assert tiny.chat_sync(CONV).text == reply.text  # greedy by default
    again = get_model("tiny:llama-tiny", cache_dir=tiny_cache, max_new_tokens=12)  # from the cache, same weights
    assert again.chat_sync(CONV).text == reply.text


@pytest.mark.parametrize("preset", ["qwen2-tiny"])
def test_other_preset(preset, tiny_cache):
    model = get_model(f"tiny:{preset}", cache_dir=tiny_cache, max_new_tokens=5)
    replies = model.chat_sync(CONV, n=2, temperature=0.8, seed=3).choices
    assert len(replies) == 2


def test_tools_and_tool_history_render_and_generate(tiny):
    call = make_tool_call("get_weather", {"city": "Paris"}, id="call_1")
    history = CONV + [{"role": "assistant", "content": None, "tool_calls": [call]},
                      tool_message("call_1", {"temperature": 21, "unit": "celsius"})]
    validate_messages(history)
    prompt = tiny.render(history, TOOLS)
    assert '"name": "get_weather"' in prompt and '"temperature": 21' in prompt and "<tool_call>" in prompt
    reply = tiny.chat_sync(history, tools=TOOLS, max_tokens=8)
    assert reply.usage.completion_tokens <= 8
    assert isinstance(reply.raw["parse_errors"], list)


def test_batch_matches_single_and_respects_batch_size(tiny):
    convs = [[{"role": "user", "content": f"Where is my order {20000 + 37 * i}?"}] for i in range(5)]
    singles = [tiny.chat_sync(c, temperature=0, max_tokens=8) for c in convs]
    old = tiny.batch_size
    tiny.batch_size = 2
    try:
        calls = []
        orig = tiny.model.generate

        def counting(*args, **kwargs):
            calls.append(kwargs["input_ids"].shape[0])
            return orig(*args, **kwargs)

        tiny.model.generate = counting
        batched = run_sync(tiny.chat_batch(convs, temperature=0, max_tokens=8))
    finally:
        tiny.batch_size = old
        del tiny.model.generate
    assert calls == [2, 2, 1]
    assert [r.text for r in batched] == [r.text for r in singles]
    assert [r.usage for r in batched] == [r.usage for r in singles]


def test_seeded_sampling_is_reproducible(tiny):
    a = tiny.chat_sync(CONV, temperature=1.0, top_p=0.9, n=3, seed=11)
    b = tiny.chat_sync(CONV, temperature=1.0, top_p=0.9, n=3, seed=11)
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert a.usage == b.usage and len(a.choices) == 3


def test_threads_share_the_model_safely(tiny):
    results, errors = [], []

    def worker():
        try:
            results.append(tiny.chat_sync(CONV, temperature=0, max_tokens=6).text)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4 and len(set(results)) == 1


def test_pair_and_path_forms(tiny_cache):
    from agentlab.llm.hf import HFChat
    from agentlab.models.tiny import build_tiny_model

    model, tokenizer = build_tiny_model("llama-tiny", seed=0)
    pair = HFChat((model, tokenizer), name="pair", max_new_tokens=6)
    path = get_model(f"hf:{tiny_cache / 'tiny' / 'llama-tiny-s0'}", max_new_tokens=6)
    assert pair.chat_sync(CONV).text == path.chat_sync(CONV).text  # same seed, same weights
    with pytest.raises(ValueError, match="no such directory"):
        get_model(f"hf:{tiny_cache / 'missing'}")
