"""What a metric answers when it cannot run here: `Skipped` (why, and how to make it run).

Wrong inputs raise `InferenceError` (the package's one exception); a metric whose
weights or package are missing is not an error of the input, so loaders raise
`MetricUnavailable`, a subclass carrying the `Skipped` record, and `MetricSuite`
turns it into an entry of `suite.skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InferenceError


@dataclass(frozen=True)
class Skipped:
    """A metric (or re-annotation) that did not run: which, why, and the step that enables it."""

    what: str
    reason: str
    how_to_enable: str = ""

    @property
    def message(self) -> str:
        """`<reason>; how to enable: <step>`, the text `MetricSuite.skipped` holds."""
        return self.reason + (f"; how to enable: {self.how_to_enable}" if self.how_to_enable else "")

    def __str__(self) -> str:
        return f"skipped: {self.message}"


class MetricUnavailable(InferenceError):
    """A metric model or package is missing here; `.skipped` says which and how to enable it."""

    def __init__(self, skipped: Skipped):
        super().__init__(f"{skipped.what} {skipped}")
        self.skipped = skipped
