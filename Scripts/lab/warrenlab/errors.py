"""Errors raised by the Warren VPN test lab.

Design: one exception type, `LabError`, whose message names what was wrong (the
namespace, process, field or command) so a failing test says why. Secrets (PSKs)
are never put into messages: commands that carry secrets are never echoed, and
configuration errors name the field, not its value.
Threading: plain data, no shared state.
"""


class LabError(Exception):
    """A lab operation failed; the message names the object and the reason."""
