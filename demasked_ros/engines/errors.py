"""The engines' single error type."""


class EngineError(RuntimeError):
    """A model, demasker or branch failed, or produced output of the wrong shape or type.

    Callers fail closed on it: a frame whose branches did not all complete is not certified.
    """
