"""The one exception type for bad user input: the CLI prints its message without a traceback."""


class InputError(ValueError):
    """Bad user input (file, line, argument or YAML row); the message names what is at fault."""
