"""The `dse` command line (DESIGN.md 4.1-4.3).

Every case runs in-process through `dse.cli.main(argv)`; a representative subset also runs as a real
subprocess, `python -m dse.cli ...` (started together, in parallel, by a module-scoped fixture, since
each interpreter start costs about half a second).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

B = ["--workload", "llama-3-8b", "--hardware", "h100"]
PIPE = ["--cpu-workers", "4", "--sample-bytes", "100kB"]

GOOD_HARDWARE = '''name = "toy"
[peak]
fp16 = { value = 100, unit = "TFLOP/s" }
[spec]
memory_capacity = { value = 16, unit = "GiB" }
memory_bandwidth = { value = 1, unit = "TB/s" }
'''
FILES = {
    "no_hidden": 'family = "transformer"\nlayers = 2\nheads = 8\nvocab = 1000\n',
    "bad_toml": 'family = "transformer\nlayers = 2\n',
    "negative_bw": GOOD_HARDWARE.replace("value = 1,", "value = -1,"),
    "zero_peak": GOOD_HARDWARE.replace("value = 100,", "value = 0,"),
}

# id: (arguments, fragments the single-line error must contain; the first names the option or field)
ERRORS: dict[str, tuple[list[str], list[str]]] = {
    "unknown-hardware": (["eval", "--workload", "llama-3-8b", "--hardware", "H1000"],
                         ["--hardware", "H1000", "Did you mean 'h100'"]),
    "unknown-workload": (["eval", "--workload", "llama3-8bb", "--hardware", "h100"],
                         ["--workload", "llama3-8bb", "Did you mean", "'llama-3-8b'"]),
    "batch-0": (["eval", *B, "--batch", "0"], ["--batch", "0", "an integer >= 1"]),
    "batch-negative": (["eval", *B, "--batch", "-4"], ["--batch", "-4", "an integer >= 1"]),
    "batch-fraction": (["eval", *B, "--batch", "2.5"], ["--batch", "2.5", "an integer >= 1"]),
    "batch-text": (["eval", *B, "--batch", "abc"], ["--batch", "'abc'", "an integer >= 1"]),
    "precision": (["eval", *B, "--precision", "fp7"], ["--precision", "'fp7'", "Did you mean 'fp8'"]),
    "mode": (["eval", *B, "--mode", "fly"], ["--mode", "'fly'"]),
    "recompute": (["eval", *B, "--mode", "train", "--recompute", "partial"], ["--recompute", "'partial'"]),
    "tp-heads": (["eval", *B, "--mode", "serve", "--tp", "3"], ["--tp", "3", "32"]),
    "tp-node": (["eval", *B, "--mode", "serve", "--tp", "16"], ["--tp", "16", "--gpus-per-node"]),
    "workload-file-no-hidden": (["eval", "--workload-file", "{no_hidden}", "--hardware", "h100"],
                                ["hidden", "None", "a positive integer"]),
    "workload-file-bad-toml": (["eval", "--workload-file", "{bad_toml}", "--hardware", "h100"],
                               ["--workload-file", "valid TOML"]),
    "workload-file-missing": (["eval", "--workload-file", "{dir}/nope.toml", "--hardware", "h100"],
                              ["--workload-file", "nope.toml", "an existing TOML file"]),
    "hardware-file-negative": (["eval", "--workload", "llama-3-8b", "--hardware-file", "{negative_bw}"],
                               ["memory_bandwidth", "-1", "non-negative"]),
    "qps-negative": (["eval", *B, "--mode", "serve", "--qps", "-1"], ["--qps", "-1", "> 0"]),
    # the serving engine's options (issue 12's bad-input list)
    "qps-zero": (["eval", *B, "--mode", "serve", "--qps", "0"], ["--qps", "0", "> 0"]),
    "batched-tokens-zero": (["eval", *B, "--mode", "serve", "--max-batched-tokens", "0"],
                            ["--max-batched-tokens", "0", ">= 1"]),
    "batched-tokens-beyond-context": (["eval", *B, "--mode", "serve", "--max-batched-tokens", "100000"],
                                      ["--max-batched-tokens", "100000", "context of 8192"]),
    "prefix-hit-one": (["eval", *B, "--mode", "serve", "--prefix-cache-hit", "1"], ["--prefix-cache-hit", "1", "< 1"]),
    "scheduler-misspelt": (["eval", *B, "--mode", "serve", "--scheduler", "contnuous"],
                           ["--scheduler", "contnuous", "continuous, static"]),
    "tp-beyond-links": (["eval", *B, "--hardware", "l40s", "--mode", "serve", "--tp", "16", "--gpus", "16",
                         "--gpus-per-node", "16"], ["--tp", "16", "at most 8", "l40s"]),
    "tp-without-links": (["eval", *B, "--hardware", "jetson-agx-orin", "--mode", "serve", "--tp", "2", "--gpus", "2"],
                         ["--tp", "2", "jetson-agx-orin GPUs connect"]),
    "tokens-negative": (["eval", *B, "--mode", "train", "--tokens", "-5"], ["--tokens", "-5", "> 0"]),
    "worker-bw-negative-equals": (["eval", *B, *PIPE, "--worker-bw=-250MB/s"], ["--worker-bw", "-250MB/s"]),
    "worker-bw-unit": (["eval", *B, *PIPE, "--worker-bw", "250MB"], ["--worker-bw", "'250MB'", "250MB/s"]),
    "sample-bytes-0": (["eval", *B, "--cpu-workers", "4", "--worker-bw", "250MB/s", "--sample-bytes", "0"],
                       ["--sample-bytes", "0"]),
    "qps-in-train": (["eval", *B, "--mode", "train", "--qps", "1"], ["--qps", "not used in train mode"]),
    "tokens-in-serve": (["eval", *B, "--mode", "serve", "--tokens", "100"], ["--tokens", "not used in serve mode"]),
    "cpu-workers-alone": (["eval", *B, "--cpu-workers", "4", "--sample-bytes", "1kB"],
                          ["--worker-bw", "--cpu-workers"]),
    "both-workloads": (["eval", *B, "--workload-file", "x.toml"], ["--workload", "--workload-file", "exactly one"]),
    "no-workload": (["eval", "--hardware", "h100"], ["--workload", "--workload-file", "exactly one"]),
    "region": (["eval", *B, "--duration-days", "30", "--region", "quebc"], ["--region", "'quebc'", "Did you mean"]),
    "region-without-horizon": (["eval", *B, "--region", "us-average"], ["--region", "--duration-days"]),
    "duration-days-0": (["eval", *B, "--mode", "train", "--duration-days", "0"], ["--duration-days", "0", "> 0"]),
    "duration-days-negative": (["eval", *B, "--duration-days", "-3"], ["--duration-days", "-3", "> 0"]),
    "tokens-0": (["eval", *B, "--mode", "train", "--tokens", "0"], ["--tokens", "0", "> 0"]),
    "tokens-and-duration": (["eval", *B, "--mode", "train", "--tokens", "1e9", "--duration-days", "3"],
                            ["--duration-days", "--tokens"]),
    "pue-below-1": (["eval", *B, "--duration-days", "3", "--pue", "0.9"], ["--pue", "0.9", ">= 1"]),
    "grid-negative": (["eval", *B, "--duration-days", "3", "--grid-g-per-kwh", "-300"],
                      ["--grid-g-per-kwh", "-300", ">= 0"]),
    "price-negative": (["eval", *B, "--duration-days", "3", "--purchase", "buy", "--electricity-price", "-0.1"],
                       ["--electricity-price", "-0.1", ">= 0"]),
    "price-when-renting": (["eval", *B, "--duration-days", "3", "--electricity-price", "0.1"],
                           ["--electricity-price", "--purchase buy"]),
    "purchase-misspelt": (["eval", *B, "--duration-days", "3", "--purchase", "by"],
                          ["--purchase", "'by'", "buy", "rent"]),
    "purchase-class-misspelt": (["eval", *B, "--duration-days", "3", "--purchase", "rent-spot"],
                                ["--purchase", "'rent-spot'", "rent-gpu-cloud"]),
    "worker-bw-negative": (["eval", *B, *PIPE, "--worker-bw", "-250MB/s"], ["--worker-bw", "-250MB/s"]),
    "tokens-negative-exponent": (["eval", *B, "--mode", "train", "--tokens", "-5e12"], ["--tokens", "-5e12"]),
    "unknown-option": (["eval", *B, "--btch", "4"], ["--btch", "Did you mean", "--batch"]),
    "hardware-file-zero-peak": (["eval", "--workload", "llama-3-8b", "--hardware-file", "{zero_peak}"],
                                ["peak", "0"]),
    "mode-lists-choices": (["eval", *B, "--mode", "fly"], ["--mode", "infer", "train", "serve"]),
}


POSITIVE: dict[str, list[str]] = {
    "infer": ["eval", *B, "--mode", "infer", "--batch", "2", "--seq-len", "512", "--json"],
    "serve": ["eval", *B, "--mode", "serve", "--batch", "4", "--input-len", "256", "--output-len", "64", "--json"],
    "train": ["eval", *B, "--mode", "train", "--batch", "2", "--seq-len", "512", "--json"],
    "train-tokens": ["eval", *B, "--mode", "train", "--batch", "2", "--seq-len", "512", "--tokens", "15e12",
                     "--json"],
    "infeasible": ["eval", "--workload", "llama-3-70b", "--hardware", "h100", "--mode", "infer", "--precision",
                   "fp16", "--json"],
    "worker-bw": ["eval", *B, "--batch", "2", "--seq-len", "512", *PIPE, "--worker-bw", "250MB/s", "--json"],
    "serve-overloaded": ["eval", *B, "--mode", "serve", "--batch", "4", "--qps", "10", "--json"],
    "catalog-hardware-json": ["catalog", "hardware", "--json"],
    "catalog-text": ["catalog"],
    "catalog-one": ["catalog", "hardware", "h100", "--json"],
    "eval-help": ["eval", "--help"],
}


# the representative subset also run as real subprocesses (interpreter start ~0.6 s each)
SUBPROCESS_ERRORS = ("unknown-hardware", "batch-0", "workload-file-no-hidden", "worker-bw-unit", "region",
                     "hardware-file-zero-peak")
SUBPROCESS_POSITIVE = ("infer",)


class Ran:
    """What one `dse` invocation gave: exit status, stdout, stderr."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _subprocess(args: tuple[str, ...]) -> Ran:
    r = subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parent.parent)
    return Ran(r.returncode, r.stdout, r.stderr)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_files")
    out = {"dir": str(folder)}
    for name, text in FILES.items():
        (folder / f"{name}.toml").write_text(text)
        out[name] = str(folder / f"{name}.toml")
    return out


def _fill(args, paths) -> tuple[str, ...]:
    return tuple(a.format(**paths) for a in args)


@pytest.fixture(scope="module")
def subproc(paths):
    """Runs this module's subprocess commands in parallel once; returns a lookup args -> Ran."""
    commands = {_fill(ERRORS[k][0], paths) for k in SUBPROCESS_ERRORS}
    commands |= {tuple(POSITIVE[k]) for k in SUBPROCESS_POSITIVE}
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip(commands, pool.map(_subprocess, commands), strict=True))
    return lambda args: done[_fill(args, paths)]


@pytest.fixture
def inproc(paths, capsys, monkeypatch):
    """`dse.cli.main(argv)` in this process; an escaping exception is reported as a traceback on stderr."""
    import traceback

    from dse import cli as cli_module
    monkeypatch.setattr(cli_module.signal, "signal", lambda *a: None)  # keep pytest's SIGPIPE handling

    def run(args) -> Ran:
        capsys.readouterr()
        try:
            rc = cli_module.main(list(_fill(args, paths)))
        except SystemExit as exc:  # argparse: --help, usage errors
            rc = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # noqa: BLE001 - what a user would see as a traceback
            out, err = capsys.readouterr()
            return Ran(1, out, err + traceback.format_exc())
        out, err = capsys.readouterr()
        return Ran(rc, out, err)
    return run


def assert_clean_error(result: Ran, fragments: list[str]) -> None:
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Traceback" not in out, out
    assert result.stdout == "", out
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} missing from: {lines[0]}"


@pytest.mark.parametrize("case", list(ERRORS))
def test_error(inproc, case):
    args, fragments = ERRORS[case]
    assert_clean_error(inproc(args), fragments)


@pytest.mark.parametrize("case", SUBPROCESS_ERRORS)
def test_error_subprocess(subproc, case):
    args, fragments = ERRORS[case]
    assert_clean_error(subproc(args), fragments)


@pytest.mark.parametrize("typed", ["-4", "0"])
def test_error_echoes_value_as_typed(inproc, typed):
    line = inproc(["eval", *B, "--batch", typed]).stderr
    assert re.search(rf"--batch = '?{re.escape(typed)}'? is not allowed", line), line


def test_error_exit_code_is_2(subproc):
    assert subproc(ERRORS["batch-0"][0]).returncode == 2


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not valid JSON")
    return json.loads(text, parse_constant=refuse)


def json_of(result: Ran) -> dict:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return strict_json(result.stdout)


MODE_METRICS = {
    "infer": ["latency_s", "throughput_per_s", "compute_time_s", "memory_time_s", "arithmetic_intensity"],
    "serve": ["ttft_s", "itl_s", "kv_cache_bytes", "max_batch", "tokens_per_s"],
    "train": ["step_time_s", "tokens_per_s", "samples_per_s", "mfu", "hfu", "model_tflops_per_gpu",
              "bubble_fraction"],
}


@pytest.mark.parametrize("mode", list(MODE_METRICS))
def test_eval_json_per_mode(inproc, mode):
    data = json_of(inproc(POSITIVE[mode]))
    assert set(data) == {"config", "metrics", "notes"}
    assert isinstance(data["notes"], list)
    assert data["config"]["mode"] == mode
    assert data["config"]["workload"] == "llama-3-8b"
    m = data["metrics"]
    for key in ("feasible", "infeasible_reasons", "bottleneck", "memory_per_gpu_bytes", "gpus", *MODE_METRICS[mode]):
        assert key in m, f"{key} missing in {mode} metrics"
    assert isinstance(m["feasible"], bool)
    assert isinstance(m["infeasible_reasons"], list)
    assert "time_to_train_s" not in m


def test_infeasible_point_is_an_answer(inproc):
    result = inproc(POSITIVE["infeasible"])
    m = json_of(result)["metrics"]
    assert m["feasible"] is False
    assert m["infeasible_reasons"]
    assert any(re.search(r"\d GB", r) for r in m["infeasible_reasons"]), m["infeasible_reasons"]
    assert m["latency_s"] > 0  # time metrics still computed as if memory sufficed


def test_tokens_in_scientific_notation(inproc):
    data = json_of(inproc(POSITIVE["train-tokens"]))
    assert data["config"]["tokens"] == 15e12
    m = data["metrics"]
    assert m["failure_free_time_to_train_s"] == pytest.approx(15e12 / m["tokens_per_s"], rel=1e-9)
    assert m["time_to_train_s"] == pytest.approx(m["failure_free_time_to_train_s"] / m["goodput"], rel=1e-9)


def test_rate_with_unit_parses(inproc):
    data = json_of(inproc(POSITIVE["worker-bw"]))
    assert data["config"]["worker_bw"] == 250e6
    assert data["config"]["sample_bytes"] == 100e3
    for key in ("data_stall_fraction", "accelerator_utilization", "cpu_workers_needed"):
        assert key in data["metrics"]


def test_overloaded_serve_prints_valid_json(inproc):
    m = json_of(inproc(POSITIVE["serve-overloaded"]))["metrics"]
    assert m["feasible"] is False
    assert "ttft_p99_s" not in m  # an unstable queue has no finite quantile: left out, and the reason says so
    assert any("exceed the capacity" in r for r in m["infeasible_reasons"])


def test_catalog_hardware_json(inproc):
    result = inproc(POSITIVE["catalog-hardware-json"])
    assert result.returncode == 0, result.stderr
    items = strict_json(result.stdout)
    assert isinstance(items, list) and items
    names = [i["name"] for i in items]
    assert "h100-sxm" in names
    assert len(names) == len(set(names))
    for item in items:
        assert item["peak"], item["name"]
        for precision, entry in item["peak"].items():
            assert entry["source"].strip(), (item["name"], precision)
            assert re.match(r"^\d{4}(-\d{2}(-\d{2})?)?$", entry["date"]), (item["name"], precision)


def test_catalog_text_lists_sources(inproc):
    result = inproc(POSITIVE["catalog-text"])
    assert result.returncode == 0, result.stderr
    for kind in ("hardware", "nodes", "fabrics", "workloads", "regions"):
        assert re.search(rf"^{kind} \(\d+\)", result.stdout, re.M), kind
    assert re.search(r"^\s+\[1\] \S", result.stdout, re.M)
    assert "datasheet" in result.stdout


def test_eval_help(inproc):
    result = inproc(POSITIVE["eval-help"])
    assert result.returncode == 0
    for option in ("--workload", "--hardware-file", "--mode", "--batch", "--worker-bw", "--tokens", "--json"):
        assert option in result.stdout


def test_eval_json_through_subprocess(subproc):
    data = json_of(subproc(POSITIVE["infer"]))
    assert set(data) == {"config", "metrics", "notes"}
    assert data["metrics"]["feasible"] is True
    assert data["config"]["hardware"] == "h100-sxm"


def test_version_and_one_catalog_entry(inproc):
    import dse
    ran = inproc(["--version"])
    assert ran.returncode == 0 and ran.stdout.strip() == f"dse {dse.__version__}"
    entries = json_of(inproc(["catalog", "hardware", "h100", "--json"]))
    assert [e["name"] for e in entries] == ["h100-sxm"]  # found by its alias
    assert_clean_error(inproc(["catalog", "hardware", "h1000"]), ["h1000", "Did you mean"])
