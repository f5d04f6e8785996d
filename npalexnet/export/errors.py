"""The one error type of the exporters."""


class ExportError(ValueError):
    """A model or file that cannot be exported as asked (the message says why, in one line)."""
