"""Torch runtime for the PyTorch engines: device resolution, deterministic settings, model loading.

Split from :mod:`demasked_ros.engines.torch_backend` (which re-exports these names): everything the
torch engines and the CUDA executor need before a model runs. A device string becomes a checked
``torch.device``; :func:`configure_determinism` pins the process-wide settings that make the same frame
give the same labels (soundness rule 3); :func:`fixed_size_calls` keeps a branch independent of its
batch-mates (rule 2); and :func:`load_torch_model` loads modules, TorchScript and ``torch.export`` files
in inference mode, refusing graphs frozen with batch statistics.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from demasked_ros.engines.errors import EngineError

# cuBLAS needs this before its first use for deterministic results (read once per process).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; :class:`EngineError` when invalid or when CUDA is absent."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise EngineError(f"invalid torch device {device!r}: {error}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} requested but CUDA is not available to this torch build")
    if resolved.type not in ("cpu", "cuda"):
        raise EngineError(f"device {device!r}: only cpu and cuda devices are supported")
    if resolved.type == "cuda" and resolved.index is None:  # tensors report cuda:N, never bare cuda
        resolved = torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if resolved.type == "cpu" else resolved  # CPU tensors report bare cpu


def fixed_size_calls(call: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor],
                     size: int | None) -> torch.Tensor:
    """``call(*inputs)`` in pieces of exactly ``size`` images (the last one zero-padded), re-joined.

    Why: a GPU library may pick its convolution algorithm by batch size, so the same image could
    come out with different rounding alone and in a batch. With a fixed call size every branch is
    computed by the same kernels whatever its batch-mates (soundness rule 2). None: one call.
    """
    count = inputs[0].shape[0]
    if size is None:
        return call(*inputs)
    parts = []
    for start in range(0, count, size):
        piece = [t[start:start + size] for t in inputs]
        short = size - piece[0].shape[0]
        if short:
            piece = [torch.cat([t, t.new_zeros((short, *t.shape[1:]))]) for t in piece]
        parts.append(call(*piece)[: size - short])
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def configure_determinism(device: torch.device, threads: int) -> None:
    """Process-wide torch settings for reproducible inference (soundness rule 3).

    Deterministic algorithms on (torch picks the deterministic kernel wherever one exists), cuDNN
    benchmark off (no timing-dependent algorithm choice), TF32 off (full fp32, as the ONNX models),
    a fixed number of CPU threads, and on CPU oneDNN (mkldnn) off: on an AVX-512 CPU its convolutions
    picked other kernels for a batch of 1 than for a batch of 7, so one demasked pixel came out 1
    apart and one branch label flipped with the number of batch-mates (soundness rule 2); torch's
    native CPU convolutions run image by image and do not (about 1.4x slower). ``warn_only``: the
    setting is process-wide, and some *backward* kernels (bilinear upsampling, pooling on CUDA)
    have no deterministic version; strict mode would make gradient users in the same process
    (attacks, training) raise. Every forward op of the inference path has a deterministic kernel,
    and the same-frame tests check it.
    """
    if threads < 1:
        raise EngineError(f"threads must be >= 1, got {threads}")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if device.type == "cpu":
        torch.set_num_threads(int(threads))
        torch.backends.mkldnn.enabled = False  # type: ignore[assignment]  # a module-level flag


def load_torch_model(model: torch.nn.Module | str | Path, device: torch.device) -> torch.nn.Module:
    """A module in eval mode on ``device``: an ``nn.Module``, a TorchScript file (``.pt``/``.ts``,
    ``torch.jit.save``) or a ``torch.export`` program (``.pt2``, ``torch.export.save``).

    Batch statistics would make one branch depend on its batch-mates, so: a ``.pt2`` program
    (which cannot be put in eval mode with ``.eval()``) has its batch-norm and dropout calls
    rewritten to inference mode (:func:`exported_to_eval`), and a traced TorchScript with
    batch-norm frozen in training mode is refused. Raises :class:`EngineError` when the file is
    missing, bad or refused.
    """
    if isinstance(model, torch.nn.Module):
        return model.to(device).eval()
    path = Path(model)
    if not path.is_file():
        raise EngineError(f"torch model file not found: {path}")
    try:
        if path.suffix == ".pt2":
            return exported_to_eval(torch.export.load(str(path)).module()).to(device)
        scripted = torch.jit.load(str(path), map_location=device).eval()
    except EngineError:
        raise
    except Exception as error:  # torch raises RuntimeError / various parser errors
        raise EngineError(f"cannot load torch model {path}: {error}") from error
    frozen = traced_training_ops(scripted)
    if frozen:
        raise EngineError(f"{path}: {len(frozen)} x {frozen[0]} traced in training mode (batch statistics: "
                          "one branch would depend on the others in its batch); trace it after "
                          "model.eval()")
    return scripted


#: (op, index of its ``training`` argument) for the ATen calls that behave differently in training.
_TRAINING_ARGUMENT = {"batch_norm": 5, "native_batch_norm": 5, "dropout": 2, "native_dropout": 2,
                      "feature_dropout": 2, "alpha_dropout": 2, "feature_alpha_dropout": 2}
#: Batch-norm variants that exist only in training graphs (no inference form to rewrite to).
_TRAINING_ONLY = ("_native_batch_norm_legit_functional", "_native_batch_norm_legit",
                  "cudnn_batch_norm", "miopen_batch_norm")


def exported_to_eval(module: torch.nn.Module) -> torch.nn.Module:
    """A ``torch.export`` module with every batch-norm/dropout call switched to inference mode.

    Why: ``ExportedProgram.module()`` refuses ``.eval()``, and a program exported from a module
    in training mode normalises with batch statistics. The ``training`` argument of each such
    call in the FX graph is set to False (what ``.eval()`` does for a live module).

    Raises:
        EngineError: a training-only batch-norm op that has no inference form in the graph.
    """
    graph = getattr(module, "graph", None)
    if graph is None:
        raise EngineError(f"expected an FX graph module from torch.export, got {type(module).__name__}")
    changed = False
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(getattr(node.target, "_overloadpacket", None), "__name__", str(node.target))
        if name in _TRAINING_ONLY:
            raise EngineError(f"exported program uses {name} (batch statistics, training only); export "
                              "the model after model.eval()")
        index = _TRAINING_ARGUMENT.get(name)
        if index is not None and len(node.args) > index and node.args[index] is True:
            node.args = (*node.args[:index], False, *node.args[index + 1:])
            changed = True
    if changed:
        module.recompile()  # type: ignore[operator]
    return module


def traced_training_ops(module: torch.jit.ScriptModule) -> list[str]:
    """TorchScript ops whose ``training`` argument is a constant True (traced in training mode)."""
    found = []
    for node in module.inlined_graph.nodes():
        kind = node.kind()
        if not kind.startswith("aten::"):
            continue
        index = _TRAINING_ARGUMENT.get(kind[len("aten::"):])
        inputs = list(node.inputs())
        if index is None or len(inputs) <= index:
            continue
        source = inputs[index].node()
        if source.kind() == "prim::Constant" and source.output().toIValue() is True:
            found.append(kind)
    return found
