"""The BFCL checker and evaluation loop on the real BFCL v4 files (from the bfcl-eval wheel).

- every possible answer, written as a model would write it (JSON calls, OpenAI tool calls with OpenAI-safe
  names, Python call syntax; Java/JS values as source strings and as typed values), passes the checker — except
  the few ground truths that contradict their own function doc, listed in KNOWN_UNPASSABLE with the reason;
- targeted mutations of those answers fail (wrong name, missing required, extra parameter, wrong type, wrong
  value, a dropped parallel call);
- irrelevance/relevance logic on every such entry;
- end-to-end runs with the oracle rule model (100%) and a tiny random-init model (scores low), both resumable.
"""
import copy
import json
from collections import Counter

import pytest

from agentlab.actions.bfcl import (AST_CATEGORIES, BFCL_CATEGORIES, SINGLE_TURN_CATEGORIES, _check_schema,
                                   bfcl_data_dir, bfcl_to_trajectory, bfcl_tools, canonical_answer, load_bfcl,
                                   load_possible_answers, tool_name)
from agentlab.actions.bfcl_checker import check_entry, to_python_syntax
from agentlab.actions.bfcl_eval import CountingChat, evaluate_bfcl

try:
    bfcl_data_dir()
except FileNotFoundError as e:  # pragma: no cover - the wheel is installed by .ci/setup
    pytest.skip(f"BFCL data not installed: {e}", allow_module_level=True)

# Ground truths that no output can pass, because the possible answer contradicts the function doc.
KNOWN_UNPASSABLE = {
    "live_simple_106-63-0": ("type_error:simple", "required array parameters whose only acceptable value is '' (\"may be omitted\")"),
    "live_simple_112-68-0": ("type_error:simple", "required array parameters whose only acceptable value is '' (\"may be omitted\")"),
    "live_multiple_862-181-3": ("unexpected_param", "the answer requires 'journey_start_time', which the doc of Trains_1_FindTrains does not declare"),
    "live_multiple_964-207-0": ("missing_required", "the answer uses 'question' where the doc of transfer_to_human_agent requires 'statement'"),
}

# Irrelevance entries whose question and function docs are identical to an AST entry's, which expects a call:
# no model (the oracle included) can pass both; the oracle answers with the call.
KNOWN_CONTRADICTORY = {
    "live_irrelevance_118-7-8": "same question and functions as live_simple_29-7-2",
    "live_irrelevance_565-173-0": "same question and functions as live_multiple_262-125-1",
    "live_irrelevance_567-175-0": "same question and functions as live_simple_176-102-0",
}

# Ground truths that pass the checker but do not validate against the converted JSON Schema (so
# bfcl_to_trajectory needs validate=False for them).
KNOWN_SCHEMA_MISMATCH = {
    "parallel_multiple_21": "a variable name (string) for an array parameter",
    "parallel_multiple_94": "strings in an integer array",
    "live_simple_106-63-0": "'' for required arrays",
    "live_simple_112-68-0": "'' for required arrays",
    "live_multiple_87-38-4": "value outside the enum",
    "live_multiple_552-153-1": "boolean for a string enum ('True'/'False'/'dontcare')",
    "live_multiple_595-158-1": "integer for a string enum",
    "live_multiple_596-158-2": "integer for a string enum",
    "live_multiple_731-167-2": "boolean for a string enum",
    "live_multiple_733-167-4": "boolean for a string enum",
    "live_multiple_735-167-6": "boolean for a string enum",
    "live_multiple_750-169-5": "value outside the enum",
    "live_multiple_756-169-11": "value outside the enum",
    "live_multiple_835-178-10": "value outside the enum",
    "live_multiple_862-181-3": "undeclared parameter",
    "live_multiple_871-182-8": "value outside the enum",
    "live_multiple_947-197-0": "value outside the enum",
    "live_multiple_964-207-0": "undeclared parameter / missing required",
    "live_multiple_1038-265-0": "None for a string parameter",
    "live_parallel_multiple_2-2-0": "value outside the enum",
}


@pytest.fixture(scope="module")
def ast_items():
    """(entry, ground truth) for every entry of the 10 AST categories."""
    out = []
    for c in AST_CATEGORIES:
        gts = load_possible_answers(c)
        out.extend((e, gts[e.id]) for e in load_bfcl(c))
    return out


def test_category_sizes_and_schemas():
    sizes = {c: len(load_bfcl(c)) for c in BFCL_CATEGORIES}
    assert sizes == {c: info.size for c, info in BFCL_CATEGORIES.items()}
    distinct = {}
    for c in SINGLE_TURN_CATEGORIES:
        for e in load_bfcl(c):
            for t in bfcl_tools(e)[0]:
                distinct.setdefault(json.dumps(t["function"]["parameters"], sort_keys=True), t)
    for t in distinct.values():
        _check_schema(t["function"]["parameters"])
    print(f"\n{sum(sizes.values())} entries in {len(sizes)} categories; {len(distinct)} distinct tool schemas are valid JSON Schema")
    assert len(distinct) > 3000


def _outputs(entry, gt):
    """The canonical answer in every shape a model could produce it."""
    calls = canonical_answer(entry, gt)
    outs = {"json": calls, "python": to_python_syntax(calls),
            "openai": [{"id": f"c{i}", "type": "function",
                        "function": {"name": tool_name(c["name"]), "arguments": json.dumps(c["arguments"])}}
                       for i, c in enumerate(calls)]}
    if entry.language != "python": outs["typed"] = canonical_answer(entry, gt, as_source=False)
    return outs


def test_every_possible_answer_passes(ast_items):
    counts, failures = Counter(), {}
    for entry, gt in ast_items:
        for shape, out in _outputs(entry, gt).items():
            for faithful in (False, True):
                if faithful and shape == "typed": continue  # gorilla requires Java/JS values as strings
                r = check_entry(entry, out, gt, faithful=faithful)
                counts[(entry.category, r.valid)] += 1
                if not r.valid: failures.setdefault(entry.id, set()).add(r.error_type)
    per_cat = {c: (counts[(c, True)], counts[(c, True)] + counts[(c, False)]) for c in AST_CATEGORIES}
    print("\npassing checks per category (entries x output shapes x {default, faithful}):")
    for c, (ok, n) in per_cat.items(): print(f"  {c:24s} {ok}/{n}")
    assert set(failures) == set(KNOWN_UNPASSABLE), f"unexpected failures: {set(failures) ^ set(KNOWN_UNPASSABLE)}"
    for i, types in failures.items():
        assert types == {KNOWN_UNPASSABLE[i][0]}, (i, types)
    print(f"{len(ast_items)} ground truths, {len(ast_items) - len(failures)} pass in every shape; "
          f"unpassable: {', '.join(f'{i} ({why})' for i, (_, why) in KNOWN_UNPASSABLE.items())}")


def test_trajectories_validate(ast_items):
    bad = set()
    for entry, gt in ast_items:
        try: bfcl_to_trajectory(entry, gt)
        except ValueError: bad.add(entry.id)
        bfcl_to_trajectory(entry, gt, validate=False)  # always converts
    assert bad == set(KNOWN_SCHEMA_MISMATCH), bad ^ set(KNOWN_SCHEMA_MISMATCH)
    print(f"\n{len(ast_items) - len(bad)}/{len(ast_items)} ground truths validate as trajectories")


def _declared(entry, call):
    doc = entry.function(call["name"]) or {}
    return doc.get("parameters") or {}


_PY = {"integer": int, "float": float, "boolean": bool, "string": str}


def _mutations(entry, gt):
    """(name, expected error-type prefix, mutated calls) for the first call of the canonical answer."""
    calls = canonical_answer(entry, gt, as_source=False)
    c0, params = calls[0], _declared(entry, calls[0])
    props, required = params.get("properties") or {}, params.get("required") or []
    (exp_name, exp_params), = gt[0].items()
    def with_first(new):
        out = copy.deepcopy(calls); out[0] = new; return out
    yield "wrong_name", "wrong_func_name" if len(calls) == 1 else "", with_first({**c0, "name": c0["name"] + "_v2"})
    yield "extra_param", "unexpected_param" if len(calls) == 1 else "", with_first({**c0, "arguments": {**c0["arguments"], "zz_unexpected": 1}})
    req = [p for p in required if p in c0["arguments"]]
    if req:
        args = dict(c0["arguments"]); del args[req[0]]
        yield "missing_required", "missing_required" if len(calls) == 1 else "", with_first({**c0, "arguments": args})
    if "parallel" in entry.category:
        yield "dropped_call", "wrong_count", calls[:-1]
    if entry.language != "python": return
    for p, v in c0["arguments"].items():
        gtype = (props.get(p) or {}).get("type")
        acceptable = [a for a in exp_params.get(p, []) if a != ""]
        if gtype not in _PY or not acceptable or not all(type(a) is _PY[gtype] or (gtype == "float" and type(a) is int) for a in acceptable):
            continue
        wrong_type = 12345 if gtype == "string" else str(v)
        yield "wrong_type", "type_error" if len(calls) == 1 else "", with_first({**c0, "arguments": {**c0["arguments"], p: wrong_type}})
        if gtype == "string": wrong = v + " zzq"
        elif gtype == "boolean": wrong = not v
        else: wrong = v + 7919
        if not any(a == wrong and type(a) is type(wrong) for a in acceptable):
            yield "wrong_value", "value_error" if len(calls) == 1 else "", with_first({**c0, "arguments": {**c0["arguments"], p: wrong}})
        break


def test_mutations_fail(ast_items):
    counts, passed = Counter(), []
    for entry, gt in ast_items:
        if entry.id in KNOWN_UNPASSABLE: continue
        for name, prefix, out in _mutations(entry, gt):
            r = check_entry(entry, out, gt)
            counts[name] += 1
            if r.valid: passed.append((entry.id, name))
            elif prefix: assert r.error_type.startswith(prefix), (entry.id, name, r)
            else: assert r.error_type in ("cannot_find_match", "wrong_count"), (entry.id, name, r)
    print("\nmutations checked (all must fail):", dict(counts))
    assert not passed, passed[:10]
    assert counts["wrong_type"] > 1500 and counts["wrong_value"] > 1500 and counts["dropped_call"] == 440


def test_irrelevance_and_relevance():
    n = no_functions = 0
    for c in ("irrelevance", "live_irrelevance", "live_relevance"):
        for e in load_bfcl(c):
            f = e.functions[0] if e.functions else {"name": "some_function"}  # a few live_irrelevance entries offer none
            req = (f.get("parameters") or {}).get("required") or []
            call = [{"name": f["name"], "arguments": {p: "x" for p in req}}]
            refusal = ["I cannot help with that using these functions.", "[]", []]
            want_call = c == "live_relevance"
            assert check_entry(e, call).valid is want_call, e.id
            assert check_entry(e, to_python_syntax(call)).valid is want_call, e.id
            no_functions += not e.functions
            for out in refusal:
                r = check_entry(e, out)
                assert r.valid is not want_call, (e.id, out)
                assert r.error_type == (None if not want_call else "relevance:no_call")
            n += 1
    print(f"\nirrelevance/relevance logic checked on {n} entries ({no_functions} offer no function at all)")
    assert n == 240 + 884 + 16


def test_oracle_end_to_end_all_entries():
    """The oracle through the full pipeline on all 3,641 single-turn entries (FC mode): only the known ones fail."""
    res = evaluate_bfcl("rule:bfcl-oracle", concurrency=16)
    failed = set(res.records.loc[~res.records["valid"], "id"])
    assert failed == set(KNOWN_UNPASSABLE) | set(KNOWN_CONTRADICTORY)
    assert len(res.records) == sum(BFCL_CATEGORIES[c].size for c in SINGLE_TURN_CATEGORIES)
    print("\n" + res.to_markdown())


def test_oracle_prompt_mode_resumable(tmp_path):
    counter = CountingChat("rule:bfcl-oracle")
    r1 = evaluate_bfcl(counter, "all", limit=4, out_dir=tmp_path, mode="prompt")
    first = counter.calls
    r2 = evaluate_bfcl(counter, "all", limit=4, out_dir=tmp_path, mode="prompt")
    assert first == 13 * 4 and counter.calls == first  # the second run asks nothing
    assert r1.table["accuracy"].tolist() == [1.0] * 13 == r2.table["accuracy"].tolist()
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 52 and len({json.loads(l)["id"] for l in lines}) == 52


def test_tiny_model_end_to_end_resumable(tmp_path, tiny_cache):
    """A tiny random-init model: runs through the same loop, scores low, and resumes without new calls."""
    cats = ["simple_python", "multiple", "irrelevance", "live_simple"]
    gen = {"temperature": 0, "max_tokens": 16}
    counter = CountingChat("tiny:llama-tiny")
    r1 = evaluate_bfcl(counter, cats, limit=2, out_dir=tmp_path, generation=gen, concurrency=1)
    first = counter.calls
    r2 = evaluate_bfcl(counter, cats, limit=2, out_dir=tmp_path, generation=gen)
    assert first == 8 and counter.calls == 8
    assert r1.table.equals(r2.table)
    assert r1.table["model_errors"].sum() == 0
    acc = r1.table.set_index("category")["accuracy"]
    assert acc["simple_python"] == acc["multiple"] == acc["live_simple"] == 0.0  # an untrained model calls nothing useful
    print("\n(tiny random-init model, 2 items per category)\n" + r1.to_markdown())


def test_cli(tmp_path, capsys):
    from agentlab.cli import main
    argv = ["eval", "bfcl", "--model", "rule:bfcl-oracle", "--categories", "simple_javascript", "parallel", "irrelevance",
            "--limit", "3", "--out", str(tmp_path), "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| simple_javascript | non_live |" in out and "run folder:" in out
    assert (tmp_path / "table.csv").read_text().count("1.0") == 3
    assert main(argv) == 0  # resumes: nothing left to ask
    assert main(["eval", "bfcl", "--model", "rule:bfcl-oracle", "--categories", "multi_turn_base", "--out", str(tmp_path / "x")]) == 2
    assert "needs BFCL's stateful backends" in capsys.readouterr().err
