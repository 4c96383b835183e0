"""IntentionGym and PersuadeGym on the real UserRL files (skipped when ../shared/data/userrl is absent), the exact
reward formulas on hand-built cases, the reference's leak and oscillation quirks, and LLM roles behind a served model."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from agentlab.gyms.data import find_userrl_data, read_verl_parquet
from agentlab.gyms.intention import (DetailEvaluator, IntentionGym, IntentionTask, MissingDetail, intention_reward,
                                     load_tasks as load_intention, generate_tasks as generate_intention)
from agentlab.gyms.persuade import (STANCES, Persuadee, PersuadeeReply, PersuadeGym, persuasion_reward, stance_index,
                                    total_reward, load_tasks as load_persuade, generate_tasks as generate_persuade)
from agentlab.gyms.users import UserStrength, WEAK_USER
from agentlab.llm.base import RuleChat

INTENTION_FILES = ("gyms/all_intentions_train.json", "train/intention_multiturn.parquet")
PERSUADE_FILES = ("train/persuasion_multiturn.parquet", "train/alltrain_multiturn.parquet")


def _root(shared_data, files):
    root = find_userrl_data(shared_data / "userrl")
    if root is None: pytest.skip(f"{shared_data / 'userrl'} is absent")
    for rel in files:
        if not (root / rel).is_file(): pytest.skip(f"{root / rel} is absent")
    return root


@pytest.fixture(scope="module")
def intention_root(shared_data): return _root(shared_data, INTENTION_FILES)


@pytest.fixture(scope="module")
def persuade_root(shared_data): return _root(shared_data, PERSUADE_FILES)


@pytest.fixture(scope="module")
def intention_tasks(intention_root): return load_intention(intention_root / INTENTION_FILES[0])


@pytest.fixture(scope="module")
def persuade_tasks(persuade_root): return load_persuade(persuade_root / PERSUADE_FILES[0])


def play(env, policy):
    while not (env.terminated or env.truncated): env.step(policy())
    return env.score()


# ---------------------------------------------------------------- IntentionGym: data
def test_intention_files_load(intention_root, intention_tasks):
    records = json.loads((intention_root / INTENTION_FILES[0]).read_text())
    assert len(intention_tasks) == len(records) == 1012 == len({t.task_id for t in intention_tasks})
    for rec, task in zip(records, intention_tasks):
        assert (task.task_id, task.task, task.category) == (rec["id"], rec["task"], rec["category"])
        assert [(d.description, d.importance, d.inquiry, list(d.options)) for d in task.details] == \
               [(d["description"], int(d["importance"]), d["inquiry"], d["options"]) for d in rec["missing_details"]]
    rows = read_verl_parquet(intention_root / INTENTION_FILES[1])
    joined = load_intention(intention_root / INTENTION_FILES[1])
    assert len(joined) == len(rows) == 380 and {t.source for t in joined} == {"json"}
    assert all(r.env_name == "IntentionGym" for r in rows)
    assert [", ".join(d.description for d in t.details) for t in joined] == [r.ground_truth for r in rows]
    by_id = {t.task_id: t for t in intention_tasks}
    assert all(by_id[t.task_id] == t for t in joined)
    alone = load_intention(rows, details=[])       # no JSON: rebuilt from ground_truth, importance unknown (2)
    assert {t.source for t in alone} == {"parquet"} and all(d.importance == 2 for t in alone for d in t.details)


# ---------------------------------------------------------------- IntentionGym: episodes on real tasks
def test_intention_oracle_covers_every_detail_of_every_real_task(intention_tasks):
    env = IntentionGym(intention_tasks, max_steps=16)
    exact = 0
    for i, task in enumerate(intention_tasks):
        env.reset(seed=i, options={"index": i})
        score = play(env, env.oracle_action)
        s = env.episode_summary()
        assert (s["coverage"], s["terminated"], s["n_covered"]) == (1.0, True, len(task.details)), env.history
        assert score <= task.max_score + 1e-9
        exact += abs(score - task.max_score) < 1e-9
    assert exact >= 0.99 * len(intention_tasks)    # one detail per question almost everywhere


class ScriptedEvaluator(DetailEvaluator):
    "Covers the listed details (by description), whatever the question."
    def __init__(self, script): super().__init__(); self.script = list(script)
    async def covered(self, task, question, remaining, history):
        want = self.script.pop(0)
        return [i for i, d in enumerate(remaining) if d.description in want]


@pytest.mark.parametrize("script,rewards", [
    ([["A"], ["B"], ["C"]], [1.0, 0.7, 0.4]),                 # one at a time: the importance map
    ([["A", "C"], ["B"]], [0.8, 0.7]),                        # max(3) - 0.2
    ([["B", "C"], [], ["A"]], [0.5, 0.0, 1.0]),               # max(2) - 0.2; nothing covered pays 0
    ([["A", "B", "C"]], [0.6]),                               # 1.0 - 0.4
    ([["C"], ["C", "B"], ["A"]], [0.4, 0.7, 1.0]),            # a detail is paid once: C is no longer remaining
])
def test_intention_reward_formula_hand_built(script, rewards):
    task = IntentionTask("hand", "Do the thing.", "Test", (MissingDetail("A", 3), MissingDetail("B", 2), MissingDetail("C", 1)))
    env = IntentionGym([task], detail_evaluator=ScriptedEvaluator(script))
    env.reset(seed=0)
    got = [env.step("[action] a question?")[1] for _ in script]
    assert got == pytest.approx(rewards)
    assert env.terminated and env.score() == pytest.approx(sum(rewards))
    assert intention_reward([1, 1, 1, 1]) == 0.0 and intention_reward([3] * 7) == 0.0   # clipped at 0


def leak_follower(env, seed):
    "A public-information agent: one generic question, then a question about every detail the user volunteered."
    env.reset(seed=seed)
    queue, asked = ["Can you tell me more about what you need?"], set()
    while queue and not (env.terminated or env.truncated):
        feedback = env.step(f"[action] {queue.pop(0)}")[0]["feedback"]
        for about in re.findall(r"Also, regarding the ([^:]+):", feedback):
            if about not in asked: asked.add(about); queue.append(f"What about the {about}?")
    return env.score()


def test_intention_faithful_leak_scores_above_one_corrected_does_not(intention_tasks):
    tasks = [t for t in intention_tasks if len(t.details) >= 3][:150]
    corrected = [leak_follower(IntentionGym(tasks, faithful_leak=False), i) for i in range(len(tasks))]
    faithful = [leak_follower(IntentionGym(tasks, faithful_leak=True), i) for i in range(len(tasks))]
    # same seeds draw the same tasks in both gyms; the corrected user never volunteers, so nothing is learnt
    assert np.mean(corrected) < 0.05 and max(corrected) <= 1.0
    assert np.mean(faithful) > 1.0 and np.mean([s > 1.0 for s in faithful]) > 0.5
    env = IntentionGym(tasks)
    for i, (c, f) in enumerate(zip(corrected, faithful)):
        env.reset(seed=i)
        bound = env.task.max_score            # sum of the mapped importances <= number of details
        assert c <= bound + 1e-9 and f <= bound + 1e-9 and bound <= len(env.task.details)


def test_intention_strength_knobs(intention_tasks):
    tasks = intention_tasks[:60]
    leaky = [leak_follower(IntentionGym(tasks, strength=UserStrength(leak=1.0, name="leaky")), i) for i in range(60)]
    assert np.mean(leaky) > 1.0                       # volunteering one detail per reply is enough to chain through
    steps, unsure = {}, 0
    for strength in (None, WEAK_USER):               # a weak evaluator misses covered details: the expert re-asks
        env = IntentionGym(tasks, strength=strength)
        steps[strength] = []
        for i in range(60):
            env.reset(seed=i, options={"index": i})
            play(env, env.oracle_action)
            assert env.episode_summary()["coverage"] == 1.0
            steps[strength].append(env.step_count)
            unsure += sum("I'm not sure yet" in h["feedback"] for h in env.history)
    assert np.mean(steps[WEAK_USER]) > 1.2 * np.mean(steps[None]) and unsure > 0


def test_intention_synthetic_sizes_and_oracle():
    test, train = generate_intention(), generate_intention(split="train")
    assert (len(test), len(train)) == (40, 380)
    assert generate_intention(seed=5) == generate_intention(seed=5)
    env = IntentionGym(test + train)
    for i in range(len(env.tasks)):
        env.reset(seed=i, options={"index": i})
        play(env, env.oracle_action)
        assert env.episode_summary()["coverage"] == 1.0


# ---------------------------------------------------------------- PersuadeGym: data and episodes on real rows
def test_persuade_files_load(persuade_root, persuade_tasks):
    rows = read_verl_parquet(persuade_root / PERSUADE_FILES[0])
    assert len(persuade_tasks) == len(rows) == 378 == len({t.task_id for t in persuade_tasks})
    for row, task in zip(rows, persuade_tasks):
        assert (task.task_id, task.claim, task.argument) == (row.reward_model["id"], row.reward_model["claim"], row.reward_model["argument"])
        assert row.ground_truth == task.claim and 2 <= len(task.points) <= 8 and 0 <= task.receptivity <= 1
    merged = [r for r in read_verl_parquet(persuade_root / PERSUADE_FILES[1]) if r.env_name == "PersuadeGym"]
    from_merged = load_persuade(merged)
    assert len(from_merged) == 378 and {t.task_id: t for t in from_merged} == {t.task_id: t for t in persuade_tasks}


def test_persuade_oracle_reaches_strongly_disagree_on_every_real_row(persuade_tasks):
    env = PersuadeGym(persuade_tasks, max_steps=16)
    turns = []
    for i in range(len(persuade_tasks)):
        env.reset(seed=i, options={"index": i})
        score = play(env, env.oracle_action)
        s = env.episode_summary()
        assert (s["final_stance"], s["terminated"], s["moves_back"]) == ("Strongly Disagree", True, 0), env.history
        assert score == pytest.approx(1.0, abs=1e-5)   # a monotone path pays exactly the 6 levels
        turns.append(s["steps"])
    assert 3 <= np.mean(turns) <= 8


def test_persuade_reward_is_relative_to_the_previous_stance(persuade_tasks):
    class Scripted(Persuadee):
        def __init__(self, stances): super().__init__(); self.script = list(stances)
        async def respond(self, task, argument, stance, history, memory):
            return PersuadeeReply("ok", stance_index(self.script.pop(0)))
    stances = ["Agree", "Neutral", "Agree", "Partly Disagree", "Partly Agree", "Disagree", "Strongly Disagree"]
    env = PersuadeGym(persuade_tasks[:1], persuadee=Scripted(stances))
    env.reset(seed=0)
    got = [env.step("[answer] an argument")[1] for _ in stances]
    prev = ["Strongly Agree"] + stances[:-1]
    assert got == [persuasion_reward(p, c) for p, c in zip(prev, stances)]
    assert got == pytest.approx([1 / 6, 2 / 6, 0, 3 / 6, 0, 3 / 6, 1 / 6], abs=1e-6)
    assert env.terminated and env.score() > 1.0           # the oscillation quirk: 2 levels paid twice over
    assert env.score() == pytest.approx(total_reward(stances))
    env = PersuadeGym(persuade_tasks[:1], persuadee=Scripted(stances), reward_mode="best")
    env.reset(seed=0)
    assert [env.step("[answer] an argument")[1] for _ in stances] == pytest.approx([1 / 6, 2 / 6, 0, 1 / 6, 0, 1 / 6, 1 / 6], abs=1e-6)
    assert env.score() == pytest.approx(1.0, abs=1e-5)


def test_persuade_rule_persuadee_mechanics(persuade_tasks):
    env = PersuadeGym(persuade_tasks, max_steps=16)
    for i in range(0, len(persuade_tasks), 20):
        env.reset(seed=i, options={"index": i})
        first = env.oracle_action()
        _, r1, *_ = env.step(first)
        _, r2, *_ = env.step(first)                         # the same argument again: entrenchment, no reward
        _, r3, *_ = env.step("[answer] I disagree.")        # too short
        assert r1 > 0 and (r2, r3) == (0.0, 0.0)
        assert [h["event"] for h in env.history] == ["moved", "repetition", "short"]
        assert env.stances[2] <= env.stances[1]


def test_persuade_weak_persuadee_wavers_and_can_pay_more_than_one():
    tasks = generate_persuade(60, seed=2)
    env = PersuadeGym(tasks, strength=UserStrength(reliability=0.5, name="wobbly"))
    totals, backs = [], 0
    for i in range(len(tasks)):
        env.reset(seed=i, options={"index": i})
        totals.append(play(env, env.oracle_action)); backs += env.episode_summary()["moves_back"]
    assert backs > 0 and max(totals) > 1 + 1e-3


def test_persuade_reply_reading_agent_wins_without_hidden_state():
    "The rule persuadee restates an unaddressed reason when unmoved; rebutting it with evidence works."
    tasks = generate_persuade()
    env = PersuadeGym(tasks, max_steps=16)
    fresh = ["Independent survey data from 2021 says otherwise.", "Experts analysed the figures and disagree.",
             "A 2019 study of real outcomes found the opposite.", "Published statistics over ten years contradict it."]
    wins = 0
    for i in range(len(tasks)):
        _, _ = env.reset(seed=i, options={"index": i})
        reason, t = None, 0
        while not (env.terminated or env.truncated):
            body = f'You say "{reason}" but that does not hold up.' if reason else "I think the benefits are overstated."
            fb = env.step(f"[answer] {body} {fresh[t % 4]} {fresh[(t + 1) % 4]}")[0]["feedback"]
            t += 1
            m = re.search(r"Still, my reason stands: (.*?) My stance now:", fb)
            reason = m.group(1) if m else reason
        wins += env.episode_summary()["final_stance"] == "Strongly Disagree"
    assert wins >= 0.8 * len(tasks)


def test_persuade_synthetic_sizes():
    assert (len(generate_persuade()), len(generate_persuade(split="train"))) == (42, 378)
    random_env = PersuadeGym()
    rng = np.random.default_rng(0)
    scores = []
    for i in range(len(random_env.tasks)):
        random_env.reset(seed=i, options={"index": i})
        scores.append(play(random_env, lambda: random_env.random_action(rng)))
    assert np.mean(scores) < 0.2


# ---------------------------------------------------------------- LLM roles behind an OpenAI-compatible server
def _fake_user_llm(messages, tools=None, **gen):
    system, prompt = messages[0]["content"], messages[1]["content"]
    if "STATEMENT:" in prompt:                      # the persuadee: one level per argument
        prev = re.search(r"YOUR PREVIOUS STANCE: (.*)", prompt).group(1).strip()
        return json.dumps({"thought": "t", "response": "Fair enough.", "stance": STANCES[min(6, stance_index(prev) + 1)]})
    if "LATEST QUESTION:" in prompt:                # the detail evaluator: the details whose description words appear
        q = set(re.findall(r"[a-z]+", prompt.rsplit("LATEST QUESTION:", 1)[1].lower()))
        listed = re.findall(r"^(\d+)\. \[\w+\] (.*)$", prompt, flags=re.M)
        hits = [int(i) for i, d in listed if q & ({w.lower() for w in re.findall(r"[A-Za-z]+", d)} - {"the", "for", "of", "to"})]
        return "```json\n" + json.dumps({"analysis": "a", "is_task_related": True, "covered_detail_indices": hits}) + "\n```"
    return json.dumps({"thought": "t", "response": "I'd say mid-range."})


def test_llm_roles_through_a_served_model():
    from agentlab.serve.server import start_server
    paris = IntentionTask("paris", "Plan a trip to Paris.", "Travel", (MissingDetail("Budget for the trip", 2),
                                                                      MissingDetail("Duration of the stay", 3)))
    with start_server({"fake-user": RuleChat(_fake_user_llm, name="fake-user"),
                       "broken": RuleChat(lambda m, t=None, **g: "no JSON at all", name="broken")}) as server:
        env = IntentionGym([paris], user_model=f"openai:fake-user@{server.base_url}")
        env.reset(seed=0)
        assert env.uses_llm
        obs, r, term, *_ = env.step("[action] What is your budget?")
        assert (obs["feedback"], r, term) == ("I'd say mid-range.", 0.7, False)
        obs, r, term, *_ = env.step("[action] What duration do you have in mind?")
        assert (r, term) == (1.0, True)
        p = PersuadeGym(generate_persuade(1), user_model=f"openai:fake-user@{server.base_url}")
        p.reset(seed=0)
        assert [p.step("[answer] an argument")[1] for _ in range(6)] == pytest.approx([1 / 6] * 6, abs=1e-6)
        assert p.terminated and p.episode_summary()["final_stance"] == "Strongly Disagree"
        broken = IntentionGym([paris], user_model=f"openai:broken@{server.base_url}")
        broken.reset(seed=0)
        obs, r, term, trunc, info = broken.step("[action] What is your budget?")
        assert (r, info["user_fallback"], broken.detail_evaluator.fallbacks) == (0.0, True, 1)
        bp = PersuadeGym(generate_persuade(1), user_model=f"openai:broken@{server.base_url}")
        bp.reset(seed=0)
        obs, r, term, trunc, info = bp.step("[answer] an argument")
        assert (r, info["user_fallback"], bp.history[0]["stance"]) == (0.0, True, "Strongly Agree")


# ---------------------------------------------------------------- determinism across processes, registry
SCRIPT = """
from agentlab.gyms.intention import IntentionGym
from agentlab.gyms.persuade import PersuadeGym
from agentlab.gyms.users import WEAK_USER
out = []
for cls, kw in ((IntentionGym, dict(faithful_leak=True)), (PersuadeGym, dict(strength=WEAK_USER))):
    env = cls(**kw)
    env.reset(seed=11)
    for _ in range(4):
        if env.terminated or env.truncated: break
        out.append(env.step(env.oracle_action())[0]["feedback"])
    out.append(repr(env.task.receptivity) if cls is PersuadeGym else env.current_task_id)
print(repr(out))
"""


def test_episodes_are_identical_across_processes():
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(h), "PATH": ""}).stdout for h in (1, 2)]
    assert runs[0] == runs[1] and len(runs[0]) > 100


def test_registered_with_gymnasium():
    import gymnasium
    import agentlab.gyms  # noqa: F401  (the lead's registry, when present)
    for name in ("agentlab/IntentionGym-v0", "agentlab/PersuadeGym-v0"):
        if name not in gymnasium.registry: pytest.skip(f"{name} is not registered yet (agentlab.gyms registry)")
        env = gymnasium.make(name, max_steps=5)
        obs, info = env.reset(seed=0)
        assert obs["feedback"] and info["gym"] in ("intention", "persuade")
        assert env.step(env.unwrapped.oracle_action())[1] > 0
