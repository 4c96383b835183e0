"""TelepathyGym, TurtleGym and SearchGym on the real UserRL files (skipped when absent) and on their synthetic sets."""
import json

import numpy as np
import pytest

from agentlab.gyms import search, telepathy, turtle
from agentlab.gyms.base import ENDED_FEEDBACK
from agentlab.gyms.users import WEAK_USER, UserStrength
from agentlab.llm.base import RuleChat


@pytest.fixture(scope="module")
def userrl(shared_data):
    path = shared_data / "userrl"
    if not path.is_dir(): pytest.skip(f"{path} is absent")
    return path


def _need(path):
    if not path.is_file(): pytest.skip(f"{path} is absent")
    return path


def run_episode(env, policy, task, seed=0):
    env.reset(seed=seed, options={"task": task})
    while not (env.terminated or env.truncated): env.step(policy(env))
    return env.episode_summary()


def expert(env): return env.oracle_action()


# ---------------------------------------------------------------------------------------------------- telepathy
@pytest.fixture(scope="module")
def entities(userrl):
    return telepathy.load_tasks(_need(userrl / "gyms" / "all_entities_refined.json"))


def test_telepathy_real_files(userrl, entities):
    assert len(entities) == 401 and len({t.task_id for t in entities}) == 401
    test = telepathy.load_tasks(userrl / "gyms" / "all_entities_refined.json", split="test")
    rows = telepathy.load_tasks(_need(userrl / "train" / "telepathy_multiturn.parquet"))
    assert len(test) == 41 and len(rows) == 360
    assert {t.title for t in test}.isdisjoint({t.title for t in rows})
    by_id = {t.task_id: t for t in entities}
    assert all(by_id[r.task_id].target_entity == r.target_entity and r.split == "train" for r in rows)


def test_telepathy_expert_solves_every_real_entity(entities):
    env = telepathy.TelepathyGym(entities)
    for t in entities:
        s = run_episode(env, expert, t)
        assert s["score"] == 1.0 and s["solved"] and s["terminated"] and s["steps"] <= 3, (t.task_id, env.history)
        assert env.history[-1]["reward"] == 1.0 and sum(h["reward"] for h in env.history) == 1.0


def test_telepathy_reward_formula_on_real_entities(entities):
    env = telepathy.TelepathyGym(entities)
    rng = np.random.default_rng(0)
    for t in [entities[i] for i in rng.choice(len(entities), 30, replace=False)]:
        other = next(o for o in entities if o.title.lower() != t.title.lower() and not telepathy.rule_guess_correct(t, o.title))
        env.reset(seed=1, options={"task": t})
        r_wrong = [env.step(f"[answer] {other.title}")[1] for _ in range(2)]
        assert r_wrong == [0.0, 0.0] and not env.terminated
        obs, r, term, trunc, _ = env.step(f"[answer] {t.title}")
        assert (r, term) == (1.0, True)
        assert env.step(f"[answer] {t.title}")[0]["feedback"] == ENDED_FEEDBACK
        assert env.score() == 1.0 and env.state_dict()["best_score"] == 1.0


def test_telepathy_rule_answerer_on_real_entities(entities):
    answers = {q: [telepathy.rule_yes_no(t, q) for t in entities] for q in ["Is it a person?", "Is it man-made?"]}
    for q, a in answers.items():
        assert {"Yes", "No"} <= set(a), q                  # the taxonomy decides kind questions both ways
    kinds = [telepathy.entity_kind(t.category) for t in entities]
    assert sum(k is not None for k in kinds) >= 0.95 * len(entities)
    animals = [t for t, k in zip(entities, kinds) if k == "animal"]
    assert animals and all(telepathy.rule_yes_no(t, "Is it an animal?") == "Yes" for t in animals)


def test_telepathy_lite_and_strength():
    lite = telepathy.generate_tasks()
    assert len(lite) == 41 and telepathy.generate_tasks() == lite
    assert {t.title for t in lite}.isdisjoint({t.title for t in telepathy.generate_tasks(split="train")})
    env = telepathy.TelepathyGym()
    assert all(run_episode(env, expert, t)["score"] == 1.0 for t in lite)
    # a weak user flips about 30% of definite answers, reproducibly for a seed
    t = lite[0]
    qs = [f"Is it {w}?" for w in (*telepathy.LITE_COLOURS, *telepathy.LITE_SIZES)] * 5
    def answers(strength, seed):
        e = telepathy.TelepathyGym([t], strength=strength, max_steps=1000)
        e.reset(seed=seed)
        return [e.step(f"[action] {q}")[0]["feedback"] for q in qs]
    truth = [telepathy.rule_yes_no(t, q) for q in qs]
    flips = np.mean([np.mean([a != b for a, b in zip(answers(WEAK_USER, s), truth)]) for s in range(10)])
    assert 0.2 < flips < 0.4, flips
    assert answers(WEAK_USER, 3) == answers(WEAK_USER, 3)
    assert answers(None, 0) == truth


# ---------------------------------------------------------------------------------------------------- turtle
@pytest.fixture(scope="module")
def stories(userrl):
    return turtle.load_tasks(_need(userrl / "gyms" / "all_stories_refined.json"))


def test_turtle_real_files(userrl, stories):
    assert len(stories) == 471
    assert all(abs(sum(c.weight for c in t.criteria) - 1) < 1e-9 for t in stories)
    test = turtle.load_tasks(userrl / "gyms" / "all_stories_refined.json", split="test")
    rows = turtle.load_tasks(_need(userrl / "train" / "turtle_multiturn.parquet"))
    assert len(test) == 48 and len(rows) == 423
    by_id = {t.task_id: t for t in stories}
    assert all(by_id[r.task_id].criteria == r.criteria and r.bottom == by_id[r.task_id].bottom for r in rows)


def test_turtle_expert_solves_every_real_story(stories):
    env = turtle.TurtleGym(stories)
    for t in stories:
        s = run_episode(env, expert, t)
        assert s["score"] == 1.0 and s["solved"] and s["terminated"], (t.task_id, env.history[-1])


def test_turtle_reward_formula_on_real_stories(stories):
    """Answers covering one more criterion at a time earn exactly that criterion's weight; worse answers earn 0."""
    env = turtle.TurtleGym(stories)
    checked = 0
    for t in stories:
        if len(t.criteria) < 2: continue
        stmts = [c.statement for c in t.criteria]
        partial = [turtle.story_score(t, turtle.rule_criterion_scores(t, " ".join(stmts[:k + 1]))) for k in range(len(stmts))]
        expected = [round(sum(c.weight for c in t.criteria[:k + 1]), 9) for k in range(len(stmts))]
        if partial != expected: continue     # statements that share key words: not a clean case for this check
        env.reset(seed=0, options={"task": t})
        rewards = []
        for k in range(len(stmts)):
            obs, r, term, trunc, _ = env.step("[answer] " + " ".join(stmts[:k + 1]))
            rewards.append(r)
            if k < len(stmts) - 1:
                assert env.step("[answer] " + stmts[0] if k else "[answer] nothing relevant")[1] == 0.0   # not better: 0
        assert np.allclose(rewards, [c.weight for c in t.criteria]), (t.task_id, rewards)
        assert term and np.isclose(env.score(), 1.0)
        checked += 1
    assert checked >= 100, checked


def test_turtle_reward_is_improvement_over_best(stories):
    """On every real story, for random answer sequences: reward = max(0, score - best so far); rewards sum to the best."""
    rng = np.random.default_rng(0)
    env = turtle.TurtleGym(stories)
    for t in stories:
        stmts = [c.statement for c in t.criteria]
        answers = [" ".join(stmts[int(i)] for i in rng.choice(len(stmts), size=int(rng.integers(1, len(stmts) + 1)), replace=False))
                   for _ in range(5)]
        env.reset(seed=0, options={"task": t})
        best, got, want = 0.0, [], []
        for a in answers:
            score = turtle.story_score(t, turtle.rule_criterion_scores(t, a))
            want.append(max(0.0, score - best)); best = max(best, score)
            got.append(env.step("[answer] " + a)[1])
            if env.terminated: break
        assert np.allclose(got, want[:len(got)]), (t.task_id, got, want)
        assert np.isclose(env.score(), env.state_dict()["best_score"])


def test_turtle_wrong_answers_score_low(stories):
    env = turtle.TurtleGym(stories)
    rewards = []
    for t in stories[:100]:
        env.reset(seed=0, options={"task": t})
        rewards.append(env.step("[answer] " + t.surface)[1])          # restating the puzzle
        rewards.append(env.step("[answer] It was all a dream and the butler did it.")[1])
    assert np.mean(rewards) < 0.1
    assert max(turtle.story_score(t, turtle.rule_criterion_scores(t, "I don't know.")) for t in stories) == 0.0


def test_turtle_threshold_and_lite():
    lite = turtle.generate_tasks()
    assert len(lite) == 48 and turtle.generate_tasks() == lite
    env = turtle.TurtleGym()
    assert all(run_episode(env, expert, t)["score"] == 1.0 for t in lite)
    t = lite[0]
    first = t.criteria[0]
    rest = 1 - first.weight
    for th, ends in [(1.0, False), (round(first.weight, 9), True)]:
        e = turtle.TurtleGym([t], success_threshold=th)
        e.reset(seed=0)
        assert e.step("[answer] " + first.statement)[2] is ends
    assert rest > 0


# ---------------------------------------------------------------------------------------------------- search
def test_search_real_questions(userrl):
    real = search.load_tasks(_need(userrl / "gyms" / "questions.json"))
    assert len(real) == 125 and all(t.documents == () for t in real)
    env = search.SearchGym(real)
    env.reset(seed=0, options={"task_id": "Bamboogle-1"})
    fb = env.step("[search] Citibank founded")[0]["feedback"]
    assert "local corpus is empty" in fb
    for t in real:
        env.reset(seed=0, options={"task": t})
        assert env.step("[answer] certainly not this")[1] == 0.0
        obs, r, term, _, _ = env.step(f"[answer] {t.answer.upper()}")
        assert (r, term) == (1.0, True), t


def test_search_retrieval_and_expert():
    lite = search.generate_tasks()
    assert len(lite) == 125 and search.generate_tasks() == lite
    env = search.SearchGym(lite)
    for t in lite:
        for q, d in zip(t.queries, t.documents):
            assert d.doc_id in [x.doc_id for x, _ in env.retriever.search(q, 5)], (q, d)
        s = run_episode(env, expert, t)
        assert s["score"] == 1.0 and s["searches"] == 2
        # the two searches show the two supporting documents to the agent
        shown = [r for h in env.history if h["choice"] == "search" for r in h["results"]]
        assert {d.doc_id for d in t.documents} <= set(shown)


def test_search_limits_and_custom_corpus():
    t = search.generate_tasks(1)[0]
    env = search.SearchGym([t], max_steps=20)
    env.reset(seed=0)
    fbs = [env.step(f"[search] {t.queries[0]}")[0]["feedback"] for _ in range(6)]
    assert fbs[-1] == search.MAX_SEARCH_FEEDBACK and all(f.startswith("Search results") for f in fbs[:5])
    env = search.SearchGym([t], corpus=[{"id": "x", "title": "X", "text": "Nothing about it."}, "Pelicans fly."])
    env.reset(seed=0)
    env.step("[search] pelicans")
    assert env.history[-1]["results"] == ["doc-1"]


# ---------------------------------------------------------------------------------------------------- all three
GYMS = [(telepathy.TelepathyGym, "[search] x"), (turtle.TurtleGym, "[search] x"), (search.SearchGym, "[action] x")]


@pytest.mark.parametrize("cls,unaccepted", GYMS)
def test_malformed_actions_change_nothing(cls, unaccepted):
    env = cls()
    env.reset(seed=0)
    env.step(env.oracle_action())          # a first (non-final) expert move, so the state is not the initial one
    assert not env.terminated
    before = env.state_dict()
    for bad in ["", None, 42, "hello", "[ask] x", unaccepted, "x" * 10_000]:
        obs, r, term, trunc, _ = env.step(bad)
        assert obs["feedback"].startswith("Format error:") and r == 0.0 and not term
    assert env.state_dict() == before


@pytest.mark.parametrize("cls", [c for c, _ in GYMS])
def test_random_agent_is_deterministic_and_bounded(cls):
    def play(seed):
        env = cls(strength=UserStrength(reliability=0.8, leak=0.2, name="mid"))
        rng = np.random.default_rng(seed)
        out = [run_episode(env, lambda e: e.random_action(rng), t, seed=seed) for t in env.tasks[:10]]
        return [(s["score"], s["steps"]) for s in out], [h["feedback"] for h in env.history]
    a, b = play(1), play(1)
    assert a == b
    assert all(0.0 <= s <= 1.0 + 1e-9 for s, _ in a[0])


def test_llm_roles_fall_back_with_reward_zero():
    broken = RuleChat(lambda m, t=None, **g: "not json", name="broken")
    for cls, act, ans in [(telepathy.TelepathyGym, "[action] Is it red?", None), (turtle.TurtleGym, "[action] Was it a ghost?", None),
                          (search.SearchGym, None, None)]:
        env = cls(user_model=broken)
        env.reset(seed=0)
        task = env.task
        if act: assert env.step(act)[1] == 0.0
        good = {telepathy.TelepathyGym: lambda: task.title, turtle.TurtleGym: lambda: task.bottom,
                search.SearchGym: lambda: "surely wrong"}[cls]()
        obs, r, term, _, _ = env.step(f"[answer] {good}")
        assert (r, term) == (0.0, False), (cls, obs)
        assert env.judge.fallbacks == 1
    # SearchGym's LLM judge is never asked when exact match succeeds
    env = search.SearchGym(user_model=broken)
    env.reset(seed=0)
    assert env.step(f"[answer] {env.task.answer}")[1] == 1.0 and env.judge.calls == 0


def test_registry_makes_the_qa_gyms():
    gyms = pytest.importorskip("agentlab.gyms")
    if not hasattr(gyms, "make_gym"): pytest.skip("agentlab.gyms registry not built yet")
    for name in ("telepathy", "turtle", "search"):
        env = gyms.make_gym(name, max_steps=4)
        obs, info = env.reset(seed=0)
        assert info["gym"] == name and obs["feedback"]
