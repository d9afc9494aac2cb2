"""What every verifier returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(str, Enum):  # noqa: UP042 - StrEnum would change str(verdict), which records and messages use
    CORRECT = "correct"
    INCORRECT = "incorrect"
    UNVERIFIABLE = "unverifiable"  # the answer could not be checked either way (unparsable, singular everywhere, ...)
    TIMEOUT = "timeout"  # checking ran past its limit; counted as not correct


@dataclass(frozen=True)
class Verification:
    verdict: Verdict
    detail: str = ""
    extracted: str | None = None

    @property
    def correct(self) -> bool:
        return self.verdict is Verdict.CORRECT
