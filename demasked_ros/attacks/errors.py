"""The attack lab's single error type."""


class AttackError(ValueError):
    """Invalid attack configuration or input (bad patch, missing torch models, shape mismatch)."""
