"""Errors that reach the user.

`InputError` is bad input (a file, a field, an option or a graph node is wrong): the command
line prints its one-line message and exits with status 2. Anything else escaping is a bug in
sparseflow and exits with status 1.
"""


class SparseflowError(Exception):
    """Base class of the errors sparseflow raises on purpose."""


class InputError(SparseflowError):
    """Report bad input; the message names the file, field, option or node at fault."""


class GraphError(InputError):
    """Report a graph that breaks an invariant; the message names the node."""
