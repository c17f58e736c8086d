"""Seed 001 (Starving the GPU): CPU decode/augment workers against an A100 training ResNet-50.

Setup from the seed: ImageNet-like samples of 500 kB, 8 CPU workers at 250 MB/s each (2 GB/s),
an NVMe drive at 3 GB/s, batch 256, fp16. Questions: is the GPU or the CPU the binding stage? How
does it move with batch size? How many workers keep the GPU busy? What changes for 5 MB medical
images, or with GPU-side decoding (DALI, modelled as a 50 GB/s transform stage)?

Where the seed is off:
* It describes a training step but times an inference pass (its 5,300 images/s). A training step
  does forward, backward and the optimizer: about 2,900 images/s on an A100 here, which 8 workers
  at 4,000 images/s can feed. For inference at ~20,000 images/s the CPU does bind.
* The crossover "as the batch grows" does not exist for training: past a few dozen samples the GPU
  runs at a steady images/s, and so does the CPU, so whichever rate is lower binds at every batch.
* 500 kB is not an ImageNet JPEG: the 1.28M-image training set is ~138 GB, ~108 kB per image.
"""
from __future__ import annotations

import math

import dse

POINT = dict(workload="resnet-50", hardware="a100", precision="fp16", storage_bw="3GB/s")


def run(batch: int = 256, workers: int = 8, worker_bw: float = 250e6, sample_bytes: float = 500e3,
        mode: str = "train") -> dict:
    return dse.evaluate(**POINT, mode=mode, batch=batch, cpu_workers=workers, worker_bw=worker_bw,
                        sample_bytes=sample_bytes)


def answer() -> dict:
    base = run()
    return {
        "train_256": base,
        "infer_256": run(mode="infer"),
        "sweep": {b: run(batch=b) for b in (32, 64, 128, 256, 512, 1024)},
        "workers_at_512": {w: run(batch=512, workers=w) for w in (8, 16, 32)},
        "medical": {b: run(batch=b, sample_bytes=5e6) for b in (32, 64, 128, 256, 512)},
        "medical_workers_256": run(batch=256, sample_bytes=5e6)["cpu_workers_needed"],
        "dali_512": run(batch=512, workers=1, worker_bw=50e9),
        "self_check": 20 / 35,
    }


def main() -> None:
    a = answer()
    t, i = a["train_256"], a["infer_256"]
    print("ResNet-50 on A100, batch 256, 500 kB samples, 8 workers x 250 MB/s, NVMe 3 GB/s")
    print(f"  training step: GPU {t['accelerator_time_s'] * 1e3:.1f} ms, storage {t['storage_time_s'] * 1e3:.1f} ms, "
          f"CPU {t['cpu_transform_time_s'] * 1e3:.1f} ms -> utilization {t['accelerator_utilization']:.0%}, "
          f"bottleneck {t['bottleneck']}")
    print(f"  inference pass: GPU {i['accelerator_time_s'] * 1e3:.1f} ms vs "
          f"CPU {i['cpu_transform_time_s'] * 1e3:.1f} ms -> utilization {i['accelerator_utilization']:.0%}, "
          f"bottleneck {i['bottleneck']}")
    print(f"  workers needed: training {t['cpu_workers_needed']}, inference {i['cpu_workers_needed']}\n")
    print(f"{'batch':>6} {'GPU step':>9} {'CPU':>9} {'bottleneck':<10} {'GPU util':>8}")
    for b, m in a["sweep"].items():
        print(f"{b:>6} {m['accelerator_time_s'] * 1e3:>7.1f}ms {m['cpu_transform_time_s'] * 1e3:>7.1f}ms "
              f"{m['bottleneck']:<10} {m['accelerator_utilization']:>8.0%}")
    print("\nWorkers at batch 512: " + ", ".join(
        f"{w}: {m['accelerator_utilization']:.0%}" for w, m in a["workers_at_512"].items()))
    print("Ex. 1: batch 64 with 8 workers is " + ("CPU" if a["sweep"][64]["bottleneck"] == "data" else "GPU")
          + "-bound.")
    first = next((b for b, m in a["medical"].items() if m["bottleneck"] == "data"), None)
    print(f"Ex. 2: 5 MB samples stall the GPU from batch {first}; batch 256 needs "
          f"{a['medical_workers_256']} workers.")
    d = a["dali_512"]
    print(f"Ex. 3: with a 50 GB/s transform stage the GPU is {d['accelerator_utilization']:.0%} busy at batch 512 "
          f"(bottleneck {d['bottleneck']}; storage now takes {d['storage_time_s'] * 1e3:.0f} ms of "
          f"{d['step_time_s'] * 1e3:.0f} ms).")
    print(f"Self-check: 20 ms GPU / 35 ms CPU -> {a['self_check']:.0%} utilization.")
    print(f"For comparison, ~108 kB ImageNet JPEGs at 8 x 250 MB/s would give "
          f"{math.floor(8 * 250e6 / 108e3):,} images/s of CPU throughput.")


if __name__ == "__main__":
    main()
