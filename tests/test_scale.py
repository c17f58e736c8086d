"""Scale-out on a real PostgreSQL server: workers sharing one study stop together at exactly its target
with distinct seeds, a worker killed with SIGKILL loses nothing completed and its trials are asked
again, heartbeats, credentials never shown or stored; and the dashboard in headless Chromium."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from scale_fixtures import dump, postgres  # noqa: F401 (a fixture)
from study_fixtures import TINY, write_tiny

import dse
from dse import study as st
from dse.cli import main

# a continuous parameter: two workers drawing from the same seed would ask identical points
WIDE = TINY.replace("[[space.rule]]", "[space.param.qps]\nfloat = [0.5, 50.0]\n\n[[space.rule]]")
CHROMIUM = "/usr/bin/chromium"


def _dse(*args: str, env: dict | None = None, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "dse.cli", *args], stdout=subprocess.PIPE, stderr=stderr, env=env)


def _trials(url: str, name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def _count(trials, state: TrialState) -> int:
    return sum(t.state == state for t in trials)


def _point(t: optuna.trial.FrozenTrial) -> tuple:
    return tuple(sorted(t.params.items()))


def test_two_workers_toward_80_leave_exactly_80(tmp_path, capsys, postgres):  # noqa: F811
    path = write_tiny(tmp_path, WIDE)
    assert main(["run", str(path), "--storage", postgres, "--workers", "2", "--trials", "80", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["new"], out["evaluated"]) == (80, 80)
    trials = _trials(postgres)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 80 and _count(trials, TrialState.RUNNING) == 0 == _count(trials, TrialState.WAITING)
    assert len({_point(t) for t in complete}) == 80, "two workers asked the same design point: same seed?"
    assert len({t.system_attrs[st.OWNER][1] for t in complete}) == 2, "both workers ran trials"
    assert main(["run", str(path), "--storage", postgres, "--workers", "2", "--trials", "80", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new"] == 0  # the target is the study's total


def test_three_workers_on_one_study_stop_together(tmp_path, postgres):  # noqa: F811
    path = write_tiny(tmp_path, WIDE)
    procs = [_dse("worker", str(path), "--storage", postgres, "--trials", "30", "--sampler", s)
             for s in ("nsga2", "random", "tpe")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e.decode()[-1500:] for _, e in outs]
    new = [int(o.decode().split(": ")[2].split()[0]) for o, _ in outs]  # "worker H:P: study tiny: N new ..."
    trials = _trials(postgres)
    assert sum(new) == 30 == _count(trials, TrialState.COMPLETE) and _count(trials, TrialState.RUNNING) == 0
    assert all("30 in all" in o.decode() for o, _ in outs)


def test_killed_worker_loses_nothing_and_its_trials_are_retried(tmp_path, postgres):  # noqa: F811
    path = write_tiny(tmp_path, WIDE.replace("population = 8", "population = 24"))
    worker = _dse("worker", str(path), "--storage", postgres, "--trials", "100000", "--sampler", "nsga2")
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            trials = _trials(postgres)
        except KeyError:  # the study is not created yet
            continue
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if _count(trials, TrialState.COMPLETE) >= 24 and len(running) >= 5 and any(t.params for t in running):
            break
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    before = _trials(postgres)
    killed = {t.number: t for t in before if t.state == TrialState.RUNNING}
    done = {t.number: t.values for t in before if t.state == TrialState.COMPLETE}
    assert killed and done, "the worker was killed while it ran trials, after it completed some"
    target = len(done) + len(killed) + 4
    again = _dse("worker", str(path), "--storage", postgres, "--trials", str(target), "--sampler", "random")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()[-2000:]
    after = {t.number: t for t in _trials(postgres)}
    assert {n: after[n].values for n in done} == done, "every trial completed before the kill is kept as it was"
    assert all(after[n].state == TrialState.FAIL for n in killed)
    retried = {t.system_attrs["failed_trial"]: t for t in after.values()
               if t.state == TrialState.COMPLETE and "failed_trial" in t.system_attrs}
    assert set(retried) == set(killed), "each trial of the killed worker was asked again and completed"
    # the design point as far as the killed worker had asked it (it may have been killed mid-batch)
    assert all(killed[n].params.items() <= retried[n].params.items() for n in killed)
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == target
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in after.values())


def test_heartbeats_tell_a_dead_remote_worker_from_a_live_one(tmp_path, monkeypatch, postgres):  # noqa: F811
    """A trial of another host whose heartbeat stopped is failed after the grace period and queued
    again; one whose run keeps beating stays RUNNING, however long."""
    monkeypatch.setattr(st, "HEARTBEAT_S", 1)
    monkeypatch.setattr(st, "GRACE_S", 4)  # three missed beats of margin for the live run on a loaded machine
    study = dse.load_study(write_tiny(tmp_path), storage=postgres)
    stored = study._optuna(None)
    trials = {}
    for who in ("dead", "live"):
        trials[who] = st._ask(stored, [])
        stored._storage.set_trial_system_attr(trials[who]._trial_id, st.OWNER, ["elsewhere.example", 1])
        study.storage.record_heartbeat(trials[who]._trial_id)
    with st._Heartbeat(study.storage) as heart:
        heart.hold([trials["live"]._trial_id])
        time.sleep(6)  # the dead trial's only beat is then 6 s old, two beyond the grace
        running = {t.number for t in st._fail_stale(stored)}
    assert running == {trials["live"].number}
    waiting = stored.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["failed_trial"] for t in waiting] == [trials["dead"].number]


def test_credentials_never_printed_logged_or_stored(tmp_path, postgres):  # noqa: F811
    secret = "hunter2-Secret"  # trust authentication ignores it, so the URL works
    url = postgres.replace("postgres@", f"postgres:{secret}@")
    path = write_tiny(tmp_path)
    runs = [("worker", str(path), "--storage", url, "--trials", "12"),
            ("run", str(path), "--trials", "16", {"DSE_STORAGE": url}),
            ("front", str(path), "--json", {"DSE_STORAGE": url})]
    for args in runs:
        env = args[-1] if isinstance(args[-1], dict) else None
        proc = _dse(*(a for a in args if isinstance(a, str)), env=env)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert secret not in out.decode() + err.decode()
    assert len([t for t in _trials(postgres) if t.state == TrialState.COMPLETE]) == 16
    assert secret not in dump(postgres)
    bad = url.replace("127.0.0.1:5432", "127.0.0.1:1").replace(postgres.split("@")[1].split(":")[0], "127.0.0.1")
    proc = _dse("run", str(path), "--storage", bad)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and secret not in err.decode() and "postgres:***@" in err.decode()


def test_worker_needs_a_shared_storage(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(st.ENV_STORAGE, raising=False)
    assert main(["worker", str(write_tiny(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "--storage" in err and "DSE_STORAGE" in err and err.count("\n") == 1
    assert main(["run", str(write_tiny(tmp_path)), "--workers", "0"]) == 2
    assert "--workers = '0'" in capsys.readouterr().err


def test_dashboard_shows_the_study_in_a_browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"NO CHROMIUM at {CHROMIUM}: apt-get install -y chromium (.ci/run installs it)")
    path = write_tiny(tmp_path, TINY.replace('name = "tiny"', 'name = "scale-out-probe"'))
    dse.load_study(path).run(trials=12)
    port = _free_port()
    # the server logs every request on stderr: into a file, since a pipe nobody reads fills (64 kB) while
    # a slow machine's renders are retried, and a server blocked writing its log answers no page
    log = (tmp_path / "dashboard.log").open("wb")
    server = _dse("dashboard", str(path), "--port", str(port), stderr=log)
    try:
        line = server.stdout.readline().decode()
        assert f"http://127.0.0.1:{port}/dashboard/" in line and "scale-out-probe" in line
        dom = _render(f"http://127.0.0.1:{port}/dashboard/")
        assert "scale-out-probe</h5>" in dom and "Direction: MINIMIZE, MAXIMIZE" in dom
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # seen only on a machine loaded by several test suites at once
            server.kill()
            server.communicate()
            pytest.fail("dse dashboard did not stop within 30 s of SIGINT; its log ends: "
                        + (tmp_path / "dashboard.log").read_text()[-1500:])
        finally:
            log.close()


def _render(url: str) -> str:
    """The page's DOM after its scripts ran, from headless Chromium (retried while the server starts)."""
    with tempfile.TemporaryDirectory() as profile:
        for _ in range(10):
            run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                  "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                                  "--dump-dom", url], capture_output=True, timeout=120)
            if b"</h5>" in run.stdout:
                break
            time.sleep(1)
    return run.stdout.decode()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
