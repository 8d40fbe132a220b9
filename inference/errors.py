"""The one exception of the `inference` package: a bad input, named with what to do instead."""


class InferenceError(ValueError):
    """An input `python -m inference` (or its library API) cannot use; the message is one line that
    names the input and the fix. The CLI prints it as `error: ...` and exits with status 2."""
