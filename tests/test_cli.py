"""The `agentlab` command line: entry points, `--help` of every subcommand, and the handlers' wiring.

`serve` and `docs` are tested here only for how they hand their arguments on (the server and the site have their own
tests: tests/test_serve.py, tests/test_docs.py); `reproduce` end to end is in tests/test_reproduce.py.
"""
import subprocess
import sys
import types
from pathlib import Path

import pytest

import agentlab
from agentlab import cli

ROOT = Path(__file__).resolve().parents[1]


def run(*argv, timeout=60):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("entry", [["-m", "agentlab.cli"], ["-m", "agentlab"]])
def test_module_entry_points(entry):
    r = run(*entry, "--help")
    assert r.returncode == 0, r.stderr
    for command in ("reproduce", "serve", "docs"):
        assert command in r.stdout
    r = run(*entry, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"agentlab {agentlab.__version__}"


def test_console_script():
    script = Path(sys.executable).parent / "agentlab"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable} (package not installed with pip install -e .)")
    r = subprocess.run([str(script), "reproduce", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--scale {smoke,small,full}" in r.stdout


@pytest.mark.parametrize("command, expected", [
    ("reproduce", ["--scale {smoke,small,full}", "--out DIR", "-p KEY=VALUE", "--list", "--papers DIR", "--run-id ID", "--only NOTEBOOK"]),
    ("serve", ["--model SPEC", "--host HOST", "--port PORT", "NAME=SPEC"]),
    ("docs", ["--out DIR", "--papers DIR", "--nbs DIR", "--no-api"]),
])
def test_subcommand_help(command, expected, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out, text


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "usage: agentlab" in capsys.readouterr().out


def test_unknown_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["frobnicate"])
    assert e.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_help_is_fast_and_light():
    """`agentlab --help` must not import papermill, torch, sphinx or the server."""
    code = ("import sys, agentlab.cli as c\n"
            "try: c.main(['--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('papermill', 'torch', 'sphinx', 'transformers', 'fastapi', 'agentlab.serve.server') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    r = run("-c", code)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_serve_hands_specs_to_server(monkeypatch):
    calls = []
    fake = types.ModuleType("agentlab.serve.server")
    fake.serve = lambda specs, host, port, log_level: calls.append((specs, host, port, log_level))
    monkeypatch.setitem(sys.modules, "agentlab.serve.server", fake)
    assert cli.main(["serve", "--model", "rule:echo", "--model", "agent=tiny:llama-tiny", "--port", "9001"]) == 0
    assert calls == [(["rule:echo", "agent=tiny:llama-tiny"], "127.0.0.1", 9001, "info")]
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 0
    assert calls[-1] == (["tiny:llama-tiny"], "0.0.0.0", 8000, "info")


def test_serve_bad_spec_is_a_clean_error(monkeypatch, capsys):
    def serve(specs, host, port, log_level): raise ValueError("model spec 'x': expected SPEC or NAME=SPEC")
    fake = types.ModuleType("agentlab.serve.server")
    fake.serve = serve
    monkeypatch.setitem(sys.modules, "agentlab.serve.server", fake)
    assert cli.main(["serve", "--model", "x"]) == 2
    assert capsys.readouterr().err.strip() == "agentlab serve: error: model spec 'x': expected SPEC or NAME=SPEC"


def test_docs_hands_arguments_to_build_site(monkeypatch, tmp_path, capsys):
    import agentlab.docsite
    calls = []
    monkeypatch.setattr(agentlab.docsite, "build_site", lambda **kw: calls.append(kw) or Path(kw["out"]) / "index.html")
    assert cli.main(["docs", "--out", str(tmp_path / "site"), "--no-api", "--papers", "p"]) == 0
    assert calls == [dict(out=str(tmp_path / "site"), nbs_dir=None, papers_dir="p", api=False)]
    assert "site: " in capsys.readouterr().out


def test_registering_a_subcommand(capsys):
    """The registration point later subcommands (eval, gen, train) use; string targets are imported lazily."""
    mod = types.ModuleType("agentlab_test_plugin")
    mod.arguments = lambda p: p.add_argument("--times", type=int, default=1)
    mod.run = lambda args: print("ran", args.times) or 0
    sys.modules["agentlab_test_plugin"] = mod
    try:
        cli.register_subcommand("plugin-demo", "a test subcommand", "agentlab_test_plugin:arguments", "agentlab_test_plugin:run")
        assert cli.main(["plugin-demo", "--times", "3"]) == 0
        assert capsys.readouterr().out.strip() == "ran 3"
        with pytest.raises(SystemExit):
            cli.main(["--help"])
        assert "plugin-demo" in capsys.readouterr().out
    finally:
        cli.SUBCOMMANDS.pop("plugin-demo", None)
        sys.modules.pop("agentlab_test_plugin", None)
    with pytest.raises(ValueError, match="subcommand name"):
        cli.register_subcommand("Not Valid", "", "x:y", "x:z")
