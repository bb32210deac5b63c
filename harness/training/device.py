"""Where and how a run computes: its device, its precision, whether its model is compiled, and the
process-wide switches these need (cuDNN autotuning, deterministic kernels).

The switches are set for one run by ``switches`` and restored when it ends, so a run on one
device does not change how the next one, or the caller's own code, computes.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from harness.core.errors import HarnessError


class DeviceUnavailable(HarnessError):
    """A device was asked for that this machine does not have."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is the first CUDA GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailable("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA GPUs that compute it natively and fp32 everywhere else.

    bf16 on a CPU only on request: oneDNN's bf16 kernels differ between CPUs (AVX512-BF16 on
    AMD and Intel, AMX tiles on recent Xeons), and on AMX Xeons the frozen ResNet-18 of seed 002
    gave a NaN loss in bf16 at its first epoch while fp32 trained (a likely cause, not verified
    on an AMX machine: oneDNN's AMX bf16 kernels have had tail bugs that leak garbage into
    outputs, uxlfoundation/oneDNN#5717). A benchmark's default must give the same kind of
    number on every machine. ``precision`` is one of ``harness.core.choices.PRECISIONS``, checked
    where it was made (the command line, a cell).
    """
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast for ``precision="bf16"`` (weights and optimiser stay fp32); nothing for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


@contextmanager
def switches(device: torch.device) -> Iterator[None]:
    """For one run: deterministic kernels on CPU (runs there are locked bit for bit), cuDNN
    autotuning on CUDA (fastest kernels for a fixed input shape). Both are restored afterwards.

    On CUDA also cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, unless the user set it),
    which cuBLAS reads once, when a process first uses it: the driver enters this before it
    touches the run's data, and a worker is started with it in its environment and enters this
    before its first tensor reaches the GPU. It stays set for the process."""
    saved = (torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved[0]
        if device.type == "cpu":  # only what was changed: setting it imports inductor (about a second)
            torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


def resolve_compile(choice: str, device: torch.device, say=print, small: bool = False) -> bool:
    """``auto`` is on for CUDA when torch.compile works there (a one-line message says why not
    when it does not) and the model is not ``small`` (too little work per run to pay for its
    compilation); off on CPU, where runs are locked bit for bit in eager mode. ``choice`` is one
    of ``harness.core.choices.COMPILE_CHOICES``, checked where it was made."""
    if choice != "auto":
        return choice == "on"
    if device.type != "cuda" or small:
        return False
    if problem := compile_problem(device):
        say(f"torch.compile does not work on {device} here ({problem}); training eagerly (--compile off)")
    return problem is None


def compile_problem(device: torch.device) -> str | None:
    """Why inductor cannot generate code for ``device``, or None: Triton for a GPU, a C++ compiler
    for the CPU. Checked without compiling anything (a trial compile cost 16 s of start-up)."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is missing or does not support this GPU"
    compiler = os.environ.get("CXX", "g++")
    return None if shutil.which(compiler) else f"no C++ compiler ({compiler}) for inductor's CPU code"


def use_compile_cache(data_root: Path, say: Callable[[str], None] = print) -> None:
    """Keep inductor's and Triton's caches in the data root's compile cache (``compile_cache``),
    unless the user chose their own, so that a second process finds the kernels the first one compiled."""
    if not {"TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"} <= os.environ.keys():
        folder = compile_cache(data_root, say)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor"))
        os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))


@functools.cache
def vec_isa_verdict() -> dict[str, str]:
    """Inductor's verdict on this CPU's vector instructions, as the environment that hands it on.

    Inductor decides it by compiling a test kernel per instruction set and loading each in a new
    Python process (26 s on an AMX Xeon with the builds cached, 38 s without); a fresh worker per
    compiled run would pay that every run. The driver decides the base check once per process and
    tells its workers (``TORCHINDUCTOR_VEC_ISA_OK``) when it is the same for every set the CPU
    has, which is when that variable gives the same choice; else each worker decides itself. The
    extra checks of AVX-512 VNNI, bf16 and AMX ignore the variable and still run in each worker
    (the small CNN's compiled test run: 77 s before, 52 s now)."""
    import platform

    from torch._inductor import cpu_vec_isa

    if platform.machine() not in ("x86_64", "AMD64"):
        return {}
    flags = cpu_vec_isa.x86_isa_checker()
    candidates = [isa for isa in cpu_vec_isa.supported_vec_isa_list if all(f in flags for f in str(isa).split())]
    passed = [isa for isa in candidates if isa]
    if candidates and len(passed) in (0, len(candidates)):
        return {"TORCHINDUCTOR_VEC_ISA_OK": "1" if passed else "0"}
    return {}


def _take_vec_isa_verdict() -> None:
    """The driver's ``vec_isa_verdict``, where it gave one: inductor's config read the variable when
    the fork server imported it, before this worker's environment was set."""
    verdict = os.environ.get("TORCHINDUCTOR_VEC_ISA_OK")
    if verdict in ("0", "1"):
        import torch._inductor.config as inductor

        inductor.cpp.vec_isa_ok = verdict == "1"


_fallbacks: dict[Path, Path] = {}  # data roots whose compile cache cannot be written -> the folder used instead


def compile_cache(data_root: Path, say: Callable[[str], None] = print) -> Path:
    """``data_root/compile-cache`` (created when first used); where that cannot be written (a
    read-only data root), a folder of this user's under the system's temporary one, said once."""
    folder = data_root / "compile-cache"
    if data_root in _fallbacks:
        return _fallbacks[data_root]
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if os.access(existing, os.W_OK | os.X_OK):  # EROFS too: access() asks the mount as well
        return folder
    fallback = Path(tempfile.gettempdir()) / f"bench-compile-cache-{os.getuid()}"
    read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
    why = "a read-only file system" if read_only else f"no write access for uid {os.getuid()}"
    say(f"compile cache: {folder} cannot be written ({why}); using {fallback} instead, so compiled kernels are "
        f"not kept in the data root")
    _fallbacks[data_root] = fallback
    return fallback


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` is torch.compile's wrapper (training and evaluation treat it specially)."""
    return isinstance(model, torch._dynamo.eval_frame.OptimizedModule)


class CompiledModels:
    """torch.compile's wrappers by architecture, owned by whoever places models (a worker holds
    one for its life): a later model of an architecture placed through the same holder gets the
    module compiled for the first, with its own initial weights and buffers copied in, so it
    starts without compiling."""

    def __init__(self) -> None:
        self._by_architecture: dict[tuple, tuple[nn.Module, nn.Module]] = {}  # -> (module, its compiled wrapper)

    def compiled(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` compiled: the holder's module of its architecture, or a new one."""
        key = (repr(model), tuple((k, tuple(v.shape), v.dtype, v.stride()) for k, v in model.state_dict().items()),
               str(device))
        if key not in self._by_architecture:
            _take_vec_isa_verdict()
            self._by_architecture[key] = (model, torch.compile(model))
            return self._by_architecture[key][1]
        module, compiled = self._by_architecture[key]
        module.load_state_dict(model.state_dict())  # this run's initial weights and buffers
        module.zero_grad(set_to_none=True)
        for p in module.parameters():
            p.requires_grad_(True)
        return compiled.train()


def place_model(model: nn.Module, device: torch.device, input_dims: int, precision: str = "fp32",
                compile_model: bool = False, compiled: CompiledModels | None = None) -> nn.Module:
    """The model on ``device``: channels_last for image-like input on CUDA and in bf16 (oneDNN's
    fast layout on CPU); optionally compiled. fp32 on CPU stays exactly as plain PyTorch runs it.

    ``compiled``: the caller's compiled modules, which a model of an architecture compiled
    before reuses (``CompiledModels``); None compiles this one afresh. ``precision`` is resolved
    already: "bf16" or "fp32".
    """
    model = model.to(device)
    if input_dims == 4 and (device.type == "cuda" or precision == "bf16"):
        model = model.to(memory_format=torch.channels_last)
    if not compile_model:
        return model
    return (compiled if compiled is not None else CompiledModels()).compiled(model, device)
