"""Build demaskers by name, so the CLI, the node and the evaluator accept the same choices."""

from __future__ import annotations

from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.protocols import Demasker

#: Names accepted by :func:`make_demasker`.
DEMASKER_NAMES = ("default", "learned", "telea", "ns", "solid")


def make_demasker(name: str, threads: int = 2) -> Demasker:
    """A demasker by name: ``telea``, ``ns``, ``solid`` (no demasking), ``learned`` or ``default``.

    ``default`` is the packaged learned demasker when its weights are installed, else TELEA.
    """
    from demasked_ros.engines import demaskers

    if name == "telea":
        return demaskers.TeleaDemasker()
    if name == "ns":
        return demaskers.NavierStokesDemasker()
    if name == "solid":
        return demaskers.SolidFillDemasker()
    if name == "learned":
        from demasked_ros.engines.learned_demasker import default_learned_demasker

        return default_learned_demasker(threads=threads)
    if name == "default":
        from demasked_ros.engines.defaults import default_demasker

        return default_demasker()
    raise EngineError(f"unknown demasker {name!r}; choose one of {list(DEMASKER_NAMES)}")
