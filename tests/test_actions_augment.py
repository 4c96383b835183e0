"""Property tests on random trajectories: augmentation never changes meaning, converters round-trip, explode is complete.

Random tools (typed parameters, random `required`), random parallel calls with arguments of the declared types,
tool results and a final answer. Set AGENTLAB_HYPOTHESIS_EXAMPLES for a longer run (default 25).
"""
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlab.actions.augment import augment, check_same_meaning
from agentlab.actions.converters import explode, from_openai, from_sharegpt, to_openai, to_sharegpt
from agentlab.actions.formats import get_format
from agentlab.actions.trajectory import Trajectory, tool_call

SETTINGS = settings(max_examples=int(os.environ.get("AGENTLAB_HYPOTHESIS_EXAMPLES", 25)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

names = st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True)
texts = st.text(max_size=15)
VALUES = {"string": texts, "integer": st.integers(-10**6, 10**6), "number": st.floats(allow_nan=False, allow_infinity=False),
          "boolean": st.booleans(), "array": st.lists(st.one_of(texts, st.integers()), max_size=3),
          "object": st.dictionaries(texts, st.one_of(st.none(), st.integers(), texts), max_size=3)}


@st.composite
def trajectories(draw):
    tool_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    tools = []
    for n in tool_names:
        params = draw(st.dictionaries(names, st.sampled_from(sorted(VALUES)), max_size=4))
        required = [p for p in params if draw(st.booleans())]
        tools.append({"type": "function", "function": {"name": n, "description": draw(texts), "parameters": {
            "type": "object", "properties": {p: {"type": t} for p, t in params.items()}, "required": required}}})
    conv = [{"role": "user", "content": draw(texts)}]
    for turn in range(draw(st.integers(1, 2))):
        calls = []
        for k in range(draw(st.integers(1, 3))):
            fn = draw(st.sampled_from(tools))["function"]
            props, req = fn["parameters"]["properties"], fn["parameters"]["required"]
            args = {p: draw(VALUES[s["type"]]) for p, s in props.items() if p in req or draw(st.booleans())}
            calls.append(tool_call(fn["name"], args, id=f"c{turn}_{k}"))
        conv.append({"role": "assistant", "content": draw(st.sampled_from(["", "Let me check."])), "tool_calls": calls})
        conv += [{"role": "tool", "name": c["function"]["name"], "tool_call_id": c["id"], "content": draw(texts)} for c in calls]
    conv.append({"role": "assistant", "content": draw(st.sampled_from(["Done.", "none", "", "Here you go: 42"]))})
    return Trajectory(f"t{draw(st.integers(0, 999))}", draw(texts), tools, conv, {"source": "random"}).validate()


def call_set(calls):
    return sorted(json.dumps({"name": c["name"], "arguments": c["arguments"]}, sort_keys=True) for c in calls)


@SETTINGS
@given(t=trajectories(), seed=st.integers(0, 2**32 - 1))
def test_augmentation_preserves_targets(t, seed):
    original = [(r.meta["kind"], r.target) for r in explode(t, target_style="json")]
    for a in augment([t], n_per=2, seed=seed):
        check_same_meaning(t, a.validate())
        fmt = get_format(a.meta["output_format"])
        got = [(r.meta["kind"], r.target) for r in explode(a, target_style="auto")]
        assert [k for k, _ in got] == [k for k, _ in original]
        for (kind, want), (_, text) in zip(original, got):
            if kind == "text": assert text == want
            else: assert call_set(fmt.parse(text)) == call_set(json.loads(want)), (fmt.name, text)


@SETTINGS
@given(t=trajectories(), seed=st.integers(0, 1000))
def test_augment_is_deterministic(t, seed):
    a = [x.to_dict() for x in augment([t], n_per=2, seed=seed)]
    b = [x.to_dict() for x in augment([t], n_per=2, seed=seed)]
    assert a == b


@SETTINGS
@given(t=trajectories())
def test_converter_round_trips(t):
    sg = to_sharegpt(t)
    back = from_sharegpt(sg, id=t.id)
    assert to_sharegpt(back) == sg
    assert call_set(back.calls()) == call_set(t.calls())
    assert from_openai(to_openai(t)).to_dict()["conversation"] == t.to_dict()["conversation"]


@SETTINGS
@given(t=trajectories(), style=st.sampled_from(["tool_calls_prefix", "json", "xml", "yaml", "python", "json_thought"]))
def test_explode_rows(t, style):
    rows = explode(t, target_style=style)
    wire = t.to_openai_messages(system=False)
    kept = [i for i in t.assistant_turns() if t.calls(i) or t.conversation[i]["content"].strip().lower() not in ("", "none", "null")]
    assert [r.meta["turn"] for r in rows] == kept
    for r in rows:
        assert r.id == f"{t.id}---{r.meta['turn'] + 1}"
        assert r.messages[0]["role"] == "system" and r.messages[1:] == wire[:r.meta["turn"]]
        if r.meta["kind"] == "tool_calls" and style not in ("tool_calls_prefix", "json"):
            assert call_set(get_format(style).parse(r.target)) == call_set(t.calls(r.meta["turn"]))
