"""Errors a task raises to say whether trying again could help."""


class TransientTaskError(Exception):
    """Worth retrying later (a timeout, a refused connection, a 4xx SMTP reply)."""


class PermanentTaskError(Exception):
    """Retrying will not help (a 5xx SMTP reply, an invalid address, a broken input file)."""
