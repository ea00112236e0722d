"""Problems found in a data set, each pinned to a file and a line (or a JSON/XML path when there is no line).

Readers collect every problem instead of stopping at the first, so a user fixes a data set in one pass:
by default the caller raises `AnnotationError` listing them all; with `skip_invalid` the bad samples are
dropped and the problems come back as warnings. Each problem has a kind, so a summary can count them by kind.
A missing class list is never skippable: dropping images cannot fix it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

_MAX_LISTED = 20


class IssueKind(str, Enum):
    """What kind of problem an issue is (the value is what summaries print)."""

    MALFORMED = "malformed annotation file or entry"
    BAD_BOX = "malformed box"
    EMPTY_BOX = "zero or negative width/height"
    OUTSIDE = "box outside the image"
    UNKNOWN_CLASS = "unknown class"
    NO_CLASS_LIST = "no class list"
    MISSING_IMAGE = "missing image"
    BAD_IMAGE = "undecodable image"
    SIZE_MISMATCH = "declared size differs"
    NO_ANNOTATION = "image without annotation file"
    ORPHAN = "annotation without image"
    PAIRING = "annotation names another image"
    DUPLICATE = "duplicate"
    OTHER = "other"


UNSKIPPABLE = frozenset({IssueKind.NO_CLASS_LIST})


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
    """One problem: where it is, what is wrong (the message names the bad value), and its kind."""

    location: Location
    message: str
    kind: IssueKind = IssueKind.OTHER

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class AnnotationError(ValueError):
    """Raised when a data set has bad annotations; `issues` lists every one of them.

    `dataset` is what reading would have kept (a `Dataset`, when reading got that far), so `data validate` can
    still summarise a set whose problems cannot be skipped.
    """

    def __init__(self, issues: Iterable[AnnotationIssue], dataset: Any = None) -> None:
        self.issues = list(issues)
        self.dataset = dataset
        super().__init__(describe_issues(self.issues))


def describe_issues(issues: list[AnnotationIssue], limit: int = _MAX_LISTED) -> str:
    """A count followed by the first `limit` issues, one per line; says how to see the rest."""
    lines = [f"{len(issues)} annotation problem(s):"]
    lines += [f"  {issue}" for issue in issues[:limit]]
    if len(issues) > limit:
        lines.append(f"  ... and {len(issues) - limit} more "
                     "(`edge-inspect data validate DIR --from FORMAT --report FILE` writes the full list)")
    return "\n".join(lines)


def count_by_kind(issues: Iterable[AnnotationIssue]) -> list[tuple[IssueKind, int]]:
    """(kind, count) pairs, most frequent first."""
    return Counter(issue.kind for issue in issues).most_common()


@dataclass
class IssueLog:
    """Collects issues while a data set is read; `finish` decides whether they are fatal."""

    issues: list[AnnotationIssue] = field(default_factory=list)

    def add(self, location: Location, message: str, kind: IssueKind = IssueKind.OTHER) -> None:
        self.issues.append(AnnotationIssue(location, message, kind))

    def extend(self, issues: Iterable[AnnotationIssue]) -> None:
        self.issues.extend(issues)

    def finish(self, skip_invalid: bool) -> tuple[AnnotationIssue, ...]:
        """Raise `AnnotationError` if anything was found, unless skipping (and skippable); else the skipped issues."""
        fatal = any(issue.kind in UNSKIPPABLE for issue in self.issues)
        if self.issues and (fatal or not skip_invalid):
            raise AnnotationError(self.issues)
        return tuple(self.issues)
