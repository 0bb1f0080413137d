"""Bounded fuzzing in CI: every target of fuzz/ under atheris, plus a replay of its corpus.

``test_fuzz_run`` runs each target as a subprocess (``python fuzz/fuzz_<target>.py``) for
a fixed number of inputs with a fixed seed, from the committed seed corpus, and fails on
any crash (an exception escaping the target or a broken invariant: libFuzzer then exits
non-zero and writes the input to the scratch directory, shown in the failure).  The
inputs it finds go to a scratch directory, never into fuzz/corpus.

``test_corpus_replay`` runs every committed seed through the target in-process (no
atheris involved), and ``test_corpus_is_generated`` checks that fuzz/corpus is exactly
what fuzz/make_corpus.py writes.  Long runs: see fuzz/README.md.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import childproc
import pytest

REPO = Path(__file__).resolve().parents[2]
FUZZ = REPO / "fuzz"
sys.path.insert(0, str(FUZZ))

import fuzzlib  # noqa: E402

TARGETS = ["decoder", "connection", "protocol"]

#: Inputs per target in CI (COAPTCP_FUZZ_RUNS overrides): 10-20 s each on a 2-core machine.
RUNS = {"decoder": 20000, "connection": 20000, "protocol": 15000}
SEED = int(os.environ.get("COAPTCP_FUZZ_SEED", "1"))
#: A hang guard, not a performance threshold: far above what a run takes.
HANG_GUARD = 600


def _load(target: str):
    return __import__(f"fuzz_{target}")


@pytest.mark.fuzz
@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replay(target: str) -> None:
    module = _load(target)
    files = fuzzlib.corpus_files(target)
    assert len(files) >= 20, f"the {target} corpus has only {len(files)} seeds"
    for path in files:
        try:
            module.test_one_input(path.read_bytes())
        except Exception as error:
            raise AssertionError(f"seed {path.relative_to(REPO)} fails: {error!r}") from error


@pytest.mark.fuzz
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_run(target: str, tmp_path: Path) -> None:
    runs = int(os.environ.get("COAPTCP_FUZZ_RUNS", RUNS[target]))
    scratch = tmp_path / "new-inputs"
    scratch.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("COAPTCP_FUZZ_NO_INSTRUMENT", None)
    command = [
        sys.executable,
        str(FUZZ / f"fuzz_{target}.py"),
        str(scratch),
        str(FUZZ / "corpus" / target),
        f"-runs={runs}",
        f"-seed={SEED}",
        "-timeout=60",  # one input running for a minute is a hang
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
    ]
    done = childproc.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD
    )
    output = done.stdout + done.stderr
    crashes = sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-"))
    )
    assert done.returncode == 0 and not crashes, (
        f"fuzz_{target} failed (exit {done.returncode}, artifacts {crashes}); reproduce with "
        f"python fuzz/fuzz_{target}.py <artifact>\n" + output[-6000:]
    )
    match = re.search(r"Done (\d+) runs", output)
    assert match, output[-3000:]
    assert int(match.group(1)) >= runs, output[-3000:]
    coverage = re.findall(r"cov: (\d+)", output)
    assert coverage and int(coverage[-1]) > 0, output[-3000:]


@pytest.mark.fuzz
def test_corpus_is_generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import make_corpus

    monkeypatch.setattr(make_corpus, "CORPUS_ROOT", tmp_path)
    make_corpus.main()
    for target in TARGETS:
        fresh = {p.name: p.read_bytes() for p in (tmp_path / target).iterdir()}
        committed = {p.name: p.read_bytes() for p in fuzzlib.corpus_files(target)}
        assert fresh.keys() == committed.keys(), (
            f"fuzz/corpus/{target} is stale: run python fuzz/make_corpus.py"
        )
        stale = [name for name in fresh if fresh[name] != committed[name]]
        assert not stale, f"fuzz/corpus/{target} differs for {stale[:5]}: run fuzz/make_corpus.py"
