"""Property-based round trips of the tool-call output formats (agentlab.actions.formats) and the trajectory record.

Every format must give back exactly the calls it rendered — same names, same argument keys, same JSON types
(1 vs 1.0 vs True, "5" vs 5, None) — because augmentation re-renders training targets in these formats.
Set AGENTLAB_HYPOTHESIS_EXAMPLES=1000 for a thorough run (default 40 keeps the file under a minute).
"""
import json
import keyword
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlab.actions.formats import FORMATS, FormatParseError, ParsedOutput, get_format
from agentlab.actions.trajectory import Trajectory, from_hf_dataset, read_jsonl, to_hf_dataset, tool_call, write_jsonl

SETTINGS = settings(max_examples=int(os.environ.get("AGENTLAB_HYPOTHESIS_EXAMPLES", 40)), deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
tool_names = st.builds(lambda parts: ".".join(parts), st.lists(identifiers, min_size=1, max_size=2))
arguments = st.dictionaries(st.one_of(identifiers, st.text(max_size=8)), json_values, max_size=5)
calls_st = st.lists(st.fixed_dictionaries({"name": tool_names, "arguments": arguments}), max_size=3)
thoughts = st.text(max_size=40).map(str.strip).filter(
    lambda t: t and "<tool_call>" not in t and "</tool_call>" not in t and "[TOOL_CALLS]" not in t)


def canonical(x) -> str:
    "Key-order-free but type-exact text of a JSON value (1, 1.0 and True differ)."
    return json.dumps(x, sort_keys=True, ensure_ascii=False)


@pytest.mark.parametrize("name", list(FORMATS))
@SETTINGS
@given(calls=calls_st)
def test_round_trip(name, calls):
    fmt = get_format(name)
    text = fmt.render(calls)
    assert canonical(fmt.parse(text)) == canonical(calls), text


@pytest.mark.parametrize("name", list(FORMATS))
@SETTINGS
@given(calls=calls_st, thought=thoughts)
def test_round_trip_with_thought(name, calls, thought):
    fmt = get_format(name)
    out = fmt.parse_output(fmt.render(calls, thought))
    assert out.thought == thought
    assert canonical(out.calls) == canonical(calls)


@pytest.mark.parametrize("name", list(FORMATS))
@SETTINGS
@given(text=st.text(max_size=60))
def test_parse_never_crashes_unexpectedly(name, text):
    "Arbitrary text either parses to well-formed calls or raises FormatParseError (a ValueError) — nothing else."
    try: calls = get_format(name).parse(text)
    except FormatParseError: return
    assert isinstance(calls, list)
    assert all(isinstance(c["name"], str) and isinstance(c["arguments"], dict) for c in calls)


def test_python_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    src = f"[f(a=__import__('pathlib').Path({str(marker)!r}).touch())]"
    with pytest.raises(FormatParseError):
        get_format("python").parse(src)
    assert not marker.exists()


def test_xml_rejects_entity_expansion():
    bomb = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><tool_calls><call name="f"><arg name="x" type="string">&a;</arg></call></tool_calls>'
    try: calls = get_format("xml").parse(bomb)
    except FormatParseError: return
    assert calls[0]["arguments"]["x"] in ("aaaaaaaaaa", "")   # internal entities at most; no external fetch


WEATHER = {"type": "function", "function": {"name": "f", "description": "",
           "parameters": {"type": "object", "properties": {}, "additionalProperties": True}}}


@SETTINGS
@given(args=st.lists(arguments, min_size=1, max_size=3), text=st.text(max_size=20))
def test_trajectory_jsonl_and_dataset_round_trip(tmp_path_factory, args, text):
    conv = [{"role": "user", "content": text}]
    for i, a in enumerate(args):
        call = tool_call("f", a, index=i)
        conv += [{"role": "assistant", "content": "", "tool_calls": [call]},
                 {"role": "tool", "name": "f", "tool_call_id": call["id"], "content": json.dumps(a)}]
    t = Trajectory("t-ü", text, [WEATHER], conv, {"n": len(args)}).normalized().validate()
    path = tmp_path_factory.mktemp("traj") / "t.jsonl"
    write_jsonl([t], path)
    back = read_jsonl(path)[0]
    assert canonical(back.to_dict()) == canonical(t.to_dict())
    ds_back = from_hf_dataset(to_hf_dataset([t]))[0]
    assert canonical(ds_back.to_dict()) == canonical(t.to_dict())
