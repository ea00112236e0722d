"""Text files of a data set are numbered as `grep -n` and editors number them."""

from __future__ import annotations

from pathlib import Path

from finetune.data.files import numbered_lines


def test_only_newline_ends_a_line_and_crlf_reads_like_lf(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(b"\r 0\nsecond\r\n\nlast")
    assert list(numbered_lines(path)) == [(1, "\r 0"), (2, "second"), (3, ""), (4, "last")]


def test_a_file_ending_in_a_newline_has_an_empty_last_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    assert list(numbered_lines(path)) == [(1, "a"), (2, "b"), (3, "")]
