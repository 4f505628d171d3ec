"""Typed errors. Each message names the fix; the CLI prints it on one line and exits 1."""

from datetime import datetime


class PinshopError(Exception):
    """A user-facing error: bad input, missing model file, locked or stale workspace."""


class UnknownModelError(PinshopError):
    """A model name that is neither registered, an alias, nor an existing file."""


class MissingWeightsError(PinshopError):
    """A registered model whose weights resolve nowhere (cache, mirror package, hub)."""


class WorkspaceLockedError(PinshopError):
    """Another pinshop process is writing to the same workspace; `holder` is what that
    process wrote into the lock file ('pinshop pid N'), or ''."""

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class StaleIndexError(PinshopError):
    """An index was built from an older snapshot than the current embeddings."""


class ModelMismatchError(PinshopError):
    """The workspace was built with one embedding model and a command asked for another."""


class DamagedFileError(PinshopError):
    """A workspace file is missing, truncated, corrupt or not what its manifest recorded.
    One message shape for every such file: what, why, and the command that repairs it."""

    def __init__(self, path: object, reason: str, fix: str) -> None:
        self.path, self.reason, self.fix = str(path), reason, fix
        super().__init__(f"{path} is damaged ({reason}): run {fix}")


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type's name when the message is
    empty), cut to `limit` characters: how a caught library error reads in one of ours."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


class UnknownProductError(PinshopError):
    """No product with that id in the catalog (`pinshop serve` answers 404)."""


def parse_date(text: str, option: str) -> datetime:
    """A date or timestamp a user typed (ISO 8601), or a one-line error naming `option`."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise PinshopError(f"{option} {text!r} is not a date (use YYYY-MM-DD)") from None
