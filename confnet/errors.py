"""The one exception type confnet raises for a user's mistake.

The command line prints its message as a single line (no traceback unless --debug), so a message
must say where the mistake is (file:line:col, or layer and blob) and, where it helps, what to do.
"""


class ConfnetError(Exception):
    """A problem with the user's input: a file, a definition, a database, an option."""
