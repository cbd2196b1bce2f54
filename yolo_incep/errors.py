"""The one exception type for bad user input (printed by the CLI without a traceback) and helpers to phrase it."""

from __future__ import annotations

import os
import re
from pathlib import Path


class InputError(ValueError):
    """Bad user input (file, line, argument or YAML row); the message names what is at fault."""


def one_line(e: BaseException) -> str:
    """Another library's error message as one plain line: its first line, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def refuse_overwriting_input(output: str | Path, *inputs: str | Path, flag: str = "--output") -> None:
    """Raise InputError when `output` is one of `inputs` (or a link to one): writing it would destroy the input."""
    out = Path(output)
    for given in inputs:
        src = Path(given)
        if out.resolve() == src.resolve() or (out.exists() and src.exists() and os.path.samefile(out, src)):
            raise InputError(f"{flag} {output}: is the input {given}; write to another file")
