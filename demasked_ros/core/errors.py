"""The core's single error type."""


class CoreError(ValueError):
    """Invalid input to the certification core (bad patch size, scheme, shapes, labels).

    A ``ValueError`` so that callers validating user input can catch the standard type.
    """
