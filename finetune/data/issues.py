"""Problems found in annotation files, each pinned to a file and a line (or a JSON/XML path when there is no line).

Readers collect every problem instead of stopping at the first, so a user fixes a data set in one pass:
by default the caller raises `AnnotationError` listing them all; with `skip_invalid` the bad samples are
dropped and the problems come back as warnings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_MAX_LISTED = 20


@dataclass(frozen=True)
class Location:
    """Where an annotation lives: a file, and a 1-based line or a path inside the file (`annotations[3]`)."""

    file: Path
    line: int | None = None
    where: str | None = None

    def __str__(self) -> str:
        text = str(self.file)
        if self.line is not None:
            text += f":{self.line}"
        if self.where:
            text += f" [{self.where}]"
        return text


@dataclass(frozen=True)
class AnnotationIssue:
    """One bad annotation: where it is and what is wrong with it (the message names the bad value)."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class AnnotationError(ValueError):
    """Raised when a data set has bad annotations; `issues` lists every one of them."""

    def __init__(self, issues: Iterable[AnnotationIssue]) -> None:
        self.issues = list(issues)
        super().__init__(describe_issues(self.issues))


def describe_issues(issues: list[AnnotationIssue], limit: int = _MAX_LISTED) -> str:
    """A count followed by the first `limit` issues, one per line."""
    lines = [f"{len(issues)} annotation problem(s):"]
    lines += [f"  {issue}" for issue in issues[:limit]]
    if len(issues) > limit:
        lines.append(f"  ... and {len(issues) - limit} more")
    return "\n".join(lines)


@dataclass
class IssueLog:
    """Collects issues while a data set is read; `finish` decides whether they are fatal."""

    issues: list[AnnotationIssue] = field(default_factory=list)

    def add(self, location: Location, message: str) -> None:
        self.issues.append(AnnotationIssue(location, message))

    def extend(self, issues: Iterable[AnnotationIssue]) -> None:
        self.issues.extend(issues)

    def finish(self, skip_invalid: bool) -> tuple[AnnotationIssue, ...]:
        """Raise `AnnotationError` if anything was found, unless skipping; then return the skipped issues."""
        if self.issues and not skip_invalid:
            raise AnnotationError(self.issues)
        return tuple(self.issues)
