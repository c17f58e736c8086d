"""Errors raised for user mistakes. Every message names the field, the value and what is allowed."""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

SHOWN_CHARS = 80  # a value echoed back in a message is cut to this many characters


def shorten(value: object) -> str:
    """The repr of a value as a message echoes it, cut short when long (a 100,000-character name)."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS - 20]}... ({len(str(value)):,} characters)"


# a password in a URL (scheme://user:PASSWORD@host) or in a query or DSN (password=PASSWORD)
_SECRET = re.compile(r"(?P<head>://[^:/@\s]*:)[^@\s]*(?=@)|(?P<key>password=)[^&\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every password in a storage URL replaced by ***: what dse prints and stores."""
    return _SECRET.sub(lambda m: f"{m['head'] or m['key']}***", text)


class DSEError(Exception):
    """Base of every error dse raises on purpose."""


class UserInputError(DSEError, ValueError):
    """A value given by the user is not allowed.

    Args:
        field: the option or file field at fault (e.g. ``--batch`` or ``workload.hidden``).
        value: what the user gave.
        allowed: what would have been accepted, in words.
    """

    def __init__(self, field: str, value: object, allowed: str, hint: str = "") -> None:
        self.field, self.value, self.allowed, self.hint = field, value, allowed, hint
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.field} = {shorten(self.value)} is not allowed: {self.allowed}"
        return f"{text}. {self.hint}" if self.hint else text

    def __reduce__(self):
        return (type(self), (self.field, self.value, self.allowed, self.hint))


class UnknownNameError(UserInputError):
    """A name that does not exist; lists short choice sets and suggests the closest known names.

    Args:
        where: how the user can see all names when there are too many to print (e.g. a command).
    """

    def __init__(self, field: str, value: object, choices: Iterable[str], hint: str = "", where: str = "") -> None:
        self.choices = sorted(set(choices))
        self.where = where
        if len(self.choices) <= 12:
            allowed = "one of " + ", ".join(self.choices)
        else:
            allowed = f"one of {len(self.choices)} known names" + (f" (see `{where}`)" if where else "")
        if not hint:
            close = difflib.get_close_matches(str(value).lower(), self.choices, n=3, cutoff=0.5)
            hint = f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(field, value, allowed, hint)

    def __reduce__(self):
        return (type(self), (self.field, self.value, self.choices, self.hint, self.where))


class CatalogFileError(UserInputError):
    """A TOML data file (catalog or user-supplied) is malformed."""


class StudyFileError(UserInputError):
    """A study, space or objectives file is malformed or names something that does not exist."""


class EmptySpaceError(UserInputError):
    """A search space whose rules (or the models) leave no design point to evaluate."""


class StorageError(UserInputError):
    """A study storage that cannot be created, written or reached; passwords in the URL and in the
    driver's reason are shown as *** (`redact`)."""

    def __init__(self, field: str, value: object, allowed: str, hint: str = "") -> None:
        super().__init__(field, redact(str(value)), redact(allowed), redact(hint))
