"""The recipes in deploy/, each parsed and the command it holds run here: the Slurm array's tasks and the
Kubernetes Job's pods as local `dse worker` processes sharing one PostgreSQL database, and the Dask
cluster's scheduler and workers as local processes that `dse sweep --dask ADDRESS` sends its chunks to."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState
from scale_fixtures import postgres  # noqa: F401 (a fixture)
from study_fixtures import write_tiny

from dse.cli import main

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"


def _env(**extra: str) -> dict:
    """This environment with the venv's commands (dse, dask) first on PATH and dse importable."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **extra}


def _complete(url: str, name: str) -> int:
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert not any(t.state == TrialState.RUNNING for t in trials)
    return sum(t.state == TrialState.COMPLETE for t in trials)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), [e.decode()[-1500:] for _, e in outs]
    return [o.decode() for o, _ in outs]


def test_slurm_array_tasks_fill_one_study(tmp_path, postgres):  # noqa: F811
    script = DEPLOY / "slurm-workers.sbatch"
    text = script.read_text()
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", text, re.MULTILINE))
    first, last = map(int, directives["array"].split("-"))
    assert last - first >= 1 and directives["cpus-per-task"] == "1"
    assert re.search(r"^srun dse worker ", text, re.MULTILINE) and "PASSWORD@" not in text.split("#SBATCH")[-1]
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "srun").write_text('#!/bin/sh\nexec "$@"\n')  # here, srun runs its command in place
    (shim / "srun").chmod(0o755)
    env = _env(STUDY=str(write_tiny(tmp_path)), TRIALS="20", DSE_STORAGE=postgres)
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    tasks = [subprocess.Popen(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (first, first + 1)]
    outs = _finish(tasks)
    assert all("20 in all" in out for out in outs) and _complete(postgres, "tiny") == 20
    unset = subprocess.run(["bash", str(script)], env={k: v for k, v in env.items() if k != "DSE_STORAGE"},
                           capture_output=True, text=True)
    assert unset.returncode != 0 and "DSE_STORAGE" in unset.stderr


def test_kubernetes_job_pods_fill_one_study(postgres):  # noqa: F811
    job = yaml.safe_load((DEPLOY / "kubernetes-workers.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job") and job["spec"]["parallelism"] >= 2
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    command = container["command"]
    assert command[:2] == ["dse", "worker"] and (ROOT / command[2]).is_file()
    secret = {e["name"]: e for e in container["env"]}["DSE_STORAGE"]["valueFrom"]["secretKeyRef"]
    assert secret["name"] and secret["key"]  # the URL comes from a Secret, not the manifest
    # the pods' command as it stands, in this repository (the image's /dse), with a smaller target
    local = [*command[:command.index("--trials") + 1], "16"]
    pods = [subprocess.Popen(local, cwd=ROOT, env=_env(DSE_STORAGE=postgres), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for _ in range(2)]
    outs = _finish(pods)
    name = re.search(r"study (\S+):", outs[0])[1]
    assert all("16 in all" in out for out in outs) and _complete(postgres, name) == 16


def test_dask_cluster_spec_runs_a_sweep(tmp_path, capsys):
    cluster = yaml.safe_load((DEPLOY / "dask-cluster.yaml").read_text())
    assert (cluster["apiVersion"], cluster["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]["args"]
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]["args"]
    assert cluster["spec"]["worker"]["replicas"] >= 2 and worker[worker.index("--nthreads") + 1] == "1"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    scheduler = [str(port) if a == "8786" else a for a in scheduler] + ["--host", "127.0.0.1"]
    env = _env(DASK_SCHEDULER_ADDRESS=address)  # what the operator gives each worker
    procs = [subprocess.Popen(scheduler, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        args = [a.replace("$(DASK_WORKER_NAME)", "w0") for a in worker]  # one replica here: 2 cores
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        path = write_tiny(tmp_path)
        assert main(["sweep", str(path), "--json"]) == 0
        alone = json.loads(capsys.readouterr().out)
        assert main(["sweep", str(path), "--json", "--dask", address]) == 0
        on_cluster = json.loads(capsys.readouterr().out)
        assert on_cluster["front"] == alone["front"] and on_cluster["evaluated"] == alone["evaluated"] == 35
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
