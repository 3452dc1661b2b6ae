"""``Closing``: the context-manager half of every object that has a ``close()``."""

from __future__ import annotations

from typing import Self


class Closing:
    """``with obj:`` returns ``obj`` and calls ``obj.close()`` on the way out, whatever
    happened inside. Subclasses define ``close``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
