"""The CPU at its capacity: each cpu profile's main models in training, against this machine's peak.

In one run, on this machine:

1. the peak: a 2048 x 2048 matrix product in fp32 and in bfloat16, GFLOP/s;
2. each cpu profile's main models (built from ``chapters/profiles/*.cpu.yaml`` by the chapters' own
   settings), a training step (forward, backward, Adam) on random batches of the chapter's image
   shape and batch size: images/s and GFLOP/s (3 x forward FLOPs x images/s, FLOPs by torch's
   counter), as a share of the peak of the path's precision, for fp32 with the contiguous layout
   and for the fast path the profile asks (bfloat16 autocast, :func:`lib.training.autocast`, in the
   profile's layout: channels-last, except chapter 1's network, which NHWC crashes on a 2-thread CPU);
3. chapter 2's encoder at wider widths, to show what size reaches half the bf16 peak;
4. one 2-thread process against two single-thread workers training at once (chapters 1 and 2, whose
   profiles can run that way, one worker per seed), in fp32 and on the fast path; on one thread NHWC
   is safe for chapter 1's network too.

It prints the table and writes ``benchmarks/results/cpu_roofline.json``, whose per-chapter training
rates ``python -m lib.run CHAPTER --profile cpu --plan`` turns into estimated minutes.

Run: ``python benchmarks/cpu_roofline.py`` (about three minutes; ``make benchmark`` runs it). Not a
test: the numbers depend on the machine, and its speed drifts by a third within a day, so only the
ratios within one run compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.provenance import cpu_description, native_bf16  # noqa: E402
from lib.units import forward_flops  # noqa: E402

PROFILES = ROOT / "chapters" / "profiles"
OUT = ROOT / "benchmarks" / "results" / "cpu_roofline.json"
CPU = torch.device("cpu")


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of an n x n matrix product in ``dtype``, best of three timed spans."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            count += 1
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start) / 1e9)
    return best


def profile(stem: str) -> dict:
    return {k: v for k, v in yaml.safe_load((PROFILES / f"{stem}.cpu.yaml").read_text()).items() if k != "seeds"}


def main_models() -> list[dict]:
    """Each cpu profile's main models, as the chapters build them: name, constructor, image shape, batch."""
    from lib import embedding_experiment as ch1, hierarchy_experiment as ch3, soc_experiment as ch2
    from lib.models import FeatureClassifier, StraightClassifier
    from lib.models.hierarchical import HierarchicalNet

    s1 = ch1.Settings(**profile("01_embeddings_extendable_classification"))
    s2 = ch2.Settings(**profile("02_self_organizing_class_embeddings"))
    s3 = ch3.Settings(**profile("03_hierarchical_transfer_learning"))
    c1 = s1.pyramid.config(len(s1.classes))
    try:  # on two threads, the layout chapter 1's rule allows (its profile's NHWC runs as single-thread workers, below)
        ch1.check_layout(CPU, s1.channels_last)
        layout1 = s1.channels_last
    except ValueError:
        layout1 = False
    models = [{"chapter": 1, "name": f"straight network (ResNet {s1.backbone} + FPN {s1.fpn_channels}), 28 px",
               "make": lambda: StraightClassifier(c1), "shape": (1, 28, 28), "batch": s1.batch_size, "classes": len(s1.classes),
               "channels_last": layout1}]
    for width in (s2.width, 16, 32, 64):
        config = ch2.model_config(ch2.Encoder(s2.encoder, width), ch2.CE, 10)
        models.append({"chapter": 2 if width == s2.width else "2, wider", "name": f"small CNN width {width}, cross-entropy, 32 px",
                       "make": lambda c=config: FeatureClassifier(c), "shape": (3, 32, 32), "batch": s2.batch_size, "classes": 10,
                       "main": width == s2.width, "channels_last": s2.channels_last})
    for family in ("ResNet", "ConvNeXt"):
        config = s3.networks.config(family, num_sub=16, input_size=s3.input_size)
        models.append({"chapter": 3, "name": f"{config.backbone}, two heads, {s3.input_size} px", "make": lambda c=config: HierarchicalNet(c),
                       "shape": (3, s3.input_size, s3.input_size), "batch": s3.batch_size, "classes": 16, "channels_last": s3.channels_last})
    return models


def training_rate(model: torch.nn.Module, shape: tuple[int, ...], classes: int, batch: int, fast: bool, seconds: float,
                  channels_last: bool = True) -> float:
    """Training images/s: fp32 contiguous, or (``fast``) bfloat16 autocast in the layout ``channels_last`` says."""
    from lib.training import autocast

    fmt = torch.channels_last if fast and channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    x, y = torch.rand(batch, *shape).contiguous(memory_format=fmt), torch.randint(0, classes, (batch,))

    def step():
        with autocast(CPU, fast):
            out = model(x)
            loss = F.cross_entropy((out if torch.is_tensor(out) else out[1]).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    count, start = 0, time.perf_counter()
    while count < 5 or time.perf_counter() - start < seconds:
        step()
        count += 1
    return count * batch / (time.perf_counter() - start)


def worker(chapter: int, fast: bool, channels_last: bool, seconds: float) -> None:
    """One of the parallel workers: a chapter's main model on one thread, its images/s on stdout."""
    torch.set_num_threads(1)
    m = next(m for m in main_models() if m["chapter"] == chapter)
    print(training_rate(m["make"](), m["shape"], m["classes"], m["batch"], fast, seconds, channels_last))


def two_workers(chapter: int, fast: bool, channels_last: bool, seconds: float) -> float:
    """Images/s of two single-thread processes training the chapter's main model at once, summed."""
    command = [sys.executable, __file__, "--seconds", str(seconds), "--worker", str(chapter), *(["--fast"] if fast else []),
               *(["--channels-last"] if channels_last else [])]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    return sum(float(p.communicate()[0].strip().splitlines()[-1]) for p in procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.fast, args.channels_last, args.seconds)
    torch.set_num_threads(2)
    bf16 = native_bf16(CPU)
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"{cpu_description()}; torch {torch.__version__}; native bf16: {'yes' if bf16 else 'no (the fast path is fp32 here)'}")
    print(f"peak (2048² matrix product, 2 threads): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s\n")
    rows = []
    for m in main_models():
        flops = forward_flops(m["make"], m["shape"])
        row = {"chapter": m["chapter"], "model": m["name"], "batch": m["batch"], "forward MFLOP": flops / 1e6, "main": m.get("main", True),
               "fast layout": "channels-last" if m["channels_last"] else "contiguous"}
        for path, fast in (("fp32", False), ("fast", True)):
            torch.manual_seed(0)
            rate = training_rate(m["make"](), m["shape"], m["classes"], m["batch"], fast, args.seconds, m["channels_last"])
            gflops = 3 * flops * rate / 1e9
            row[path] = {"images_per_s": rate, "gflops": gflops, "share_of_peak": gflops / peak["bf16" if fast and bf16 else "fp32"]}
        rows.append(row)
    parallel = {}  # chapters 1 and 2 (their cpu profiles can run as single-thread workers, one per seed)
    for chapter in (1, 2):
        row = next(r for r in rows if r["chapter"] == chapter)
        parallel[str(chapter)] = {
            "one 2-thread process, fp32 contiguous": row["fp32"]["images_per_s"],
            f"one 2-thread process, bf16 {row['fast layout']}": row["fast"]["images_per_s"],
            "two 1-thread workers, fp32 contiguous": two_workers(chapter, False, False, args.seconds),
            "two 1-thread workers, bf16 channels-last": two_workers(chapter, True, True, args.seconds),
        }
    print("| chapter | model | batch | forward MFLOP | fp32 contiguous: images/s | GFLOP/s (share of fp32 peak) | fast path: layout | "
          "images/s | GFLOP/s (share of bf16 peak) | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["fp32"], r["fast"]
        print(f"| {r['chapter']} | {r['model']} | {r['batch']} | {r['forward MFLOP']:.1f} | {a['images_per_s']:,.0f} | {a['gflops']:.0f} "
              f"({a['share_of_peak']:.0%}) | bf16, {r['fast layout']} | {b['images_per_s']:,.0f} | {b['gflops']:.0f} ({b['share_of_peak']:.0%}) | "
              f"{b['images_per_s'] / a['images_per_s']:.2f}x |")
    print("\none 2-thread process against two single-thread workers training at once (images/s, summed over the workers):")
    for chapter, p in parallel.items():
        print(f"  chapter {chapter}: " + "; ".join(f"{what} {rate:,.0f}" for what, rate in p.items()))
    below = [r for r in rows if r["main"] and r["fast"]["share_of_peak"] < 0.5]
    if below:
        wide = [r for r in rows if r["chapter"] == "2, wider" and r["fast"]["share_of_peak"] >= 0.5]
        print("\nbelow half the bf16 peak on the fast path: " + "; ".join(f"chapter {r['chapter']}'s {r['model']} "
                                                                        f"({r['fast']['share_of_peak']:.0%})" for r in below) + ".")
        print("Each of these does too little arithmetic per byte it moves: convolutions of 8 to 64 channels on small maps, and in a "
              "ConvNeXt depthwise 7x7 convolutions and LayerNorms, are bound by memory and by the cost of each call, not by the "
              "matrix units" + (f"; chapter 2's encoder reaches half the peak at width {wide[0]['model'].split('width ')[1].split(',')[0]} "
                                f"({wide[0]['fast']['share_of_peak']:.0%})" if wide else "") + ".")
    # The rate --plan turns work into minutes with: how each profile's header says it runs. Chapters 1 and 2
    # as two single-thread workers, one per seed (their sum); chapter 3 as one 2-thread process (the mean
    # of its two backbones).
    planning = {}
    for chapter in ("1", "2"):
        flops = next(r for r in rows if r["chapter"] == int(chapter))["forward MFLOP"] * 1e6
        p = parallel[chapter]
        planning[chapter] = {"fp32": 3 * flops * p["two 1-thread workers, fp32 contiguous"],
                             "fast": 3 * flops * p["two 1-thread workers, bf16 channels-last"], "how": "two single-thread workers"}
    main = [r for r in rows if r["chapter"] == 3]
    planning["3"] = {path: sum(r[path]["gflops"] for r in main) / len(main) * 1e9 for path in ("fp32", "fast")} | {"how": "one 2-thread process"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cpu": cpu_description(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "native_bf16": bf16,
                               "peak_gflops": peak, "models": rows, "parallel": parallel, "training_flops_per_s": planning}, indent=1))
    print(f"\nwritten: {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
