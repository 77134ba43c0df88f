"""Where a result comes from: the machine, the libraries, the commit of the code."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from .keys import code_digest

THREADS_ENV = "BOOK_THREADS"  # how many CPU threads a chapter run uses, whatever its profile
QUICK_THREADS = 2  # the quick profile's: its checked outputs and regression guard must agree on every machine
GIT_ENV = "BOOK_GIT_COMMIT"  # the commit a run card names when the tree is not a git checkout (a copied tree on a GPU machine)
ROOT = Path(__file__).resolve().parents[1]


def pin_threads(profile: str) -> int:
    """Fix the CPU threads of a chapter run and return how many: $BOOK_THREADS if set, else 2 for the
    quick profile (a CPU's reductions, and so the last digits of a result, depend on the thread
    count), else all that torch would use. The run card records the number."""
    named = os.environ.get(THREADS_ENV)
    if named is not None:
        if not named.isdigit() or int(named) < 1:
            raise ValueError(f"${THREADS_ENV}={named!r} must be a whole number of threads, at least 1 (or unset)")
        threads = int(named)
    else:
        threads = QUICK_THREADS if profile == "quick" else torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads


# oneDNN's instruction sets, weakest first (the names ONEDNN_MAX_CPU_ISA takes, lower-cased)
ONEDNN_ISAS = ("sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni", "avx512_core_bf16", "avx512_core_fp16",
               "avx512_core_amx")


def cpu_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def onednn_best_isa() -> str:
    """The best of :data:`ONEDNN_ISAS` this CPU has, as torch detects it."""
    cpu = torch.cpu
    if cpu._is_amx_tile_supported():
        return "avx512_core_amx"
    if cpu._is_avx512_bf16_supported():
        return "avx512_core_bf16"
    if cpu._is_avx512_supported():
        return "avx512_core_vnni" if cpu._is_vnni_supported() else "avx512_core"
    if cpu._is_avx2_supported():
        return "avx2_vnni" if cpu._is_vnni_supported() else "avx2"
    return "sse41"


def onednn_effective_isa(cap: str | None = None) -> str:
    """The instruction set oneDNN uses: the CPU's best, lowered to ``$ONEDNN_MAX_CPU_ISA`` (or ``cap``) when that caps it."""
    best = onednn_best_isa()
    cap = ((os.environ.get("ONEDNN_MAX_CPU_ISA") if cap is None else cap) or "").lower()
    return cap if cap in ONEDNN_ISAS and ONEDNN_ISAS.index(cap) < ONEDNN_ISAS.index(best) else best


def onednn_isa(cap: str | None = None) -> str:
    """The instruction set oneDNN (PyTorch's convolutions) uses here, and what caps it, for a run card."""
    best, used = onednn_best_isa(), onednn_effective_isa(cap)
    return used if used == best else f"{used} (capped by ONEDNN_MAX_CPU_ISA; the CPU has {best})"


def native_bf16(device: torch.device, cap: str | None = None) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware: a CUDA GPU that supports it, or a
    CPU whose oneDNN instruction set (after any cap) has AVX-512 BF16 or AMX. Elsewhere bfloat16 is
    emulated and slower than fp32, so the library's autocast stays off there (:func:`lib.training.autocast`)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and ONEDNN_ISAS.index(onednn_effective_isa(cap)) >= ONEDNN_ISAS.index("avx512_core_bf16")


def cpu_description(threads: int | None = None) -> str:
    """The CPU as its numbers depend on it: model, ATen's vector capability, oneDNN's instruction set,
    MKL's cap when one is set, and the threads."""
    threads = torch.get_num_threads() if threads is None else threads
    mkl = os.environ.get("MKL_ENABLE_INSTRUCTIONS")
    return (f"{cpu_model()} ({platform.machine()}), ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN {onednn_isa()}"
            + (f", MKL capped at {mkl}" if mkl else "") + f", {threads} threads")


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_description()}"


def numeric_path(device: torch.device, settings: dict, bf16: bool | None = None) -> str:
    """The arithmetic a run's training used, from its device and its settings as the run card holds
    them: bfloat16 autocast where a recipe asks ``amp`` and the device computes bfloat16 natively
    (``bf16``, by default :func:`native_bf16`), else fp32; channels-last where a recipe asks it."""

    def values(node, key: str) -> set:
        if isinstance(node, dict):
            found = {node[key]} if isinstance(node.get(key), bool) else set()
            return found.union(*(values(v, key) for v in node.values()))
        return set()

    amp, layout = values(settings, "amp"), values(settings, "channels_last")
    bf16 = native_bf16(device) if bf16 is None else bf16
    if True in amp:
        dtype = ("bf16 autocast" if amp == {True} else "bf16 autocast and fp32") if bf16 else \
            f"fp32 (bf16 autocast asked, but this {device.type.upper()} has no native bf16)"
    else:
        dtype = "fp32"
    return dtype + (", channels-last" if layout == {True} else ", contiguous" if layout == {False} else ", channels-last and contiguous"
                    if layout else "")


def this_machine() -> str:
    """The accelerator a unit trains on when one is there, else the CPU (for a unit's record)."""
    return device_description(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def library_versions(experiment: str | None = None) -> dict[str, str]:
    import numpy
    import sklearn
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "lib": code_digest(experiment),  # the chapter's experiment module and every lib file it imports
        "git": git_commit(),
    }


def git_commit(root: Path = ROOT) -> str:
    """The project's commit, with "+changes" when ``lib/`` or ``chapters/`` differ from it; outside a
    git checkout, the commit named by $BOOK_GIT_COMMIT (with "(from BOOK_GIT_COMMIT)")."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lib", "chapters"], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        named = os.environ.get(GIT_ENV)
        return f"{named} (from {GIT_ENV})" if named else f"unknown (not a git checkout; set {GIT_ENV})"
    return head + ("+changes" if dirty else "")
