"""Two training processes on one machine: each one's speed beside the other, as a share of its
speed alone, with libgomp's default spin-wait and with medpeft's (``medpeft.OMP_SPIN_COUNT``).

    .venv/bin/python benchmarks/processes.py [--steps 40] [--rounds 2]

A job is a fixed FFT training loop (ViT-Tiny, 6 blocks, 28 px, batch 32, AdamW) with torch's
default threads (all cores). Per setting and round: the job alone, then two copies started
together; the settings alternate round by round so load drifts hit both. A fair share of the
cores is 0.5x alone; the figure in docs/performance.md ("Two jobs on one machine") comes from
here. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

JOB = """
import medpeft  # first: it sets the spin count before torch loads libgomp
import sys, time, torch
from medpeft.models import BackboneConfig, create_backbone
torch.manual_seed(0)
model = create_backbone(BackboneConfig("vit_tiny", img_size=28, patch_size=4, timm_kwargs={"depth": 6}), 2)
optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
x, y = torch.randn(32, 3, 28, 28), torch.randint(0, 2, (32,))
def step():
    torch.nn.functional.cross_entropy(model(x), y).backward(); optimizer.step(); optimizer.zero_grad()
for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    step()
print(time.perf_counter() - start)
"""
SETTINGS = {"libgomp default (GOMP_SPINCOUNT=300000)": {"GOMP_SPINCOUNT": "300000"},
            "medpeft (GOMP_SPINCOUNT unset: medpeft sets it)": {}}


def run(env: dict, steps: int, copies: int) -> list[float]:
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    procs = [subprocess.Popen([sys.executable, "-c", JOB, str(steps)], env={**base, **env},
                              stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return [float(p.communicate()[0]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load before: {os.getloadavg()[0]:.2f}; {args.steps} steps per job, "
          f"{args.rounds} rounds")
    alone = {name: [] for name in SETTINGS}
    pair = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, env in SETTINGS.items():
            alone[name] += run(env, args.steps, 1)
            pair[name] += run(env, args.steps, 2)
    reference = statistics.median(alone[next(iter(SETTINGS))])
    print(f"{'setting':50s} {'alone s':>8s} {'vs default':>10s} {'pair s':>8s} {'share of alone':>15s}")
    for name in SETTINGS:
        a, p = statistics.median(alone[name]), statistics.median(pair[name])
        print(f"{name:50s} {a:8.2f} {reference / a:9.2f}x {p:8.2f} {a / p:14.2f}x")


if __name__ == "__main__":
    main()
