"""The README's user-file examples work as printed."""
import re
from pathlib import Path

import dse

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_workload_and_hardware_files(tmp_path):
    model, chip, _space = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    (tmp_path / "my_model.toml").write_text(model)
    (tmp_path / "my_chip.toml").write_text(chip)
    result = dse.evaluate_point(workload_file=str(tmp_path / "my_model.toml"),
                                hardware_file=str(tmp_path / "my_chip.toml"), mode="serve", batch=4)
    assert result.config["workload"] == "my_model" and result.config["hardware"] == "my-chip"
    assert result.metrics["feasible"] is True
    # the file describes Llama-3-8B's shape: same KV cache as the catalog entry
    catalog = dse.evaluate(workload="llama-3-8b", hardware="h100", mode="serve", batch=4)
    assert result.metrics["kv_cache_bytes"] == catalog["kv_cache_bytes"]
    assert any("computing in bf16" in n for n in result.notes)  # the chip lists bf16 only


def test_readme_space_file_runs_as_a_study(tmp_path):
    space = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)[2]
    (tmp_path / "my-space.toml").write_text(space)
    (tmp_path / "study.toml").write_text(
        'name = "readme"\nworkload = "llama-3-8b"\nmode = "serve"\nspace = "my-space.toml"\ntrials = 20\nseed = 0\n'
        '[objectives]\n[[objectives.objective]]\nmetric = "itl_s"\ndirection = "minimize"\n'
        '[[objectives.objective]]\nmetric = "tokens_per_s"\ndirection = "maximize"\n')
    study = dse.load_study(tmp_path / "study.toml")
    study.run()
    front = study.front()
    assert len(front) >= 1 and set(front["hardware"]) <= {"a100-sxm-80gb", "h100-sxm", "h200-sxm"}
    assert (32 % front["tp"] == 0).all()  # Llama-3-8B's 32 heads: the rule holds on the front
