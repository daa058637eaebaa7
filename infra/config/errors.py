"""The one error type a wrong stack file produces."""

import pulumi


class StackConfigError(pulumi.RunError):
    """A stack file holds a value mlstack cannot use.

    Subclassing `pulumi.RunError` makes `pulumi up` print the message alone, without the
    traceback; `mlstack preview` prints the same single line.
    """
