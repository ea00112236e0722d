"""Florence JSONL region-task lines: `<DENSE_REGION_CAPTION>` and `<CAPTION_TO_PHRASE_GROUNDING>phrase` are read
beside `<OD>` lines, every bad one is refused naming file:line and the value, and writing, converting, splitting and
summarising keep them (or refuse to lose them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.data.convert import read_dataset, write_dataset
from finetune.data.issues import AnnotationError, IssueKind
from finetune.data.jsonl import ANNOTATIONS, CLASS_FILE, read_jsonl, write_jsonl
from finetune.data.report import dataset_lines
from finetune.data.split import split_dataset, write_splits
from tests.finetune.data.helpers import CLASSES, write_image

DENSE = "<DENSE_REGION_CAPTION>"
GROUND = "<CAPTION_TO_PHRASE_GROUNDING>"
BOX = "<loc_100><loc_200><loc_300><loc_400>"
OTHER = "<loc_500><loc_500><loc_520><loc_530>"


def line(image: str, prefix: str, suffix: object) -> str:
    return json.dumps({"image": image, "prefix": prefix, "suffix": suffix})


def write_set(folder: Path, lines: list[str], images: tuple[str, ...] = ("a", "b", "c")) -> Path:
    for index, name in enumerate(images):
        write_image(folder / "images" / f"{name}.png", (200, 100), seed=index)
    (folder / ANNOTATIONS).write_text("\n".join(lines) + "\n")
    (folder / CLASS_FILE).write_text("\n".join(CLASSES) + "\n")
    return folder


GOOD = [
    line("images/a.png", "<OD>", f"scratch{BOX}"),
    line("images/a.png", DENSE, f"long dark scratch{BOX}tiny hole{OTHER}"),
    line("images/a.png", f"{GROUND}scratch", f"scratch{BOX}{OTHER}"),
    line("images/a.png", f"{GROUND}hole", ""),
    line("images/b.png", f"{GROUND}oil spot", f"oil spot{BOX}oil spot{OTHER}"),
    line("images/c.png", DENSE, ""),
]


def test_region_task_lines_are_read_beside_the_od_lines(tmp_path: Path) -> None:
    dataset = read_jsonl(write_set(tmp_path, GOOD))
    assert [s.image.name for s in dataset.samples] == ["a.png"]  # the <OD> samples are what they always were
    assert [(t.image.name, t.task, t.phrase, t.detections.labels) for t in dataset.tasks] == [
        ("a.png", DENSE, "", ["long dark scratch", "tiny hole"]),
        ("a.png", GROUND, "scratch", ["scratch", "scratch"]),
        ("a.png", GROUND, "hole", []),
        ("b.png", GROUND, "oil spot", ["oil spot", "oil spot"]),
        ("c.png", DENSE, "", []),
    ]
    dense = dataset.tasks[0]
    assert dense.image_size == (200, 100) and dense.prompt == DENSE
    assert dense.detections.xyxy[0].tolist() == pytest.approx([20.1, 20.05, 60.1, 40.05])  # bin centres, pixels
    assert dataset.tasks[1].target() == f"scratch{BOX}{OTHER}"  # Florence-2's form: the phrase once
    assert dataset.tasks[3].target() == f"oil spot{BOX}{OTHER}"  # the repeated-phrase form is read too
    assert dataset.tasks[2].target() == ""  # not on the frame


def test_only_region_task_lines_need_no_class_list(tmp_path: Path) -> None:
    folder = write_set(tmp_path, [GOOD[1], GOOD[4]])
    (folder / CLASS_FILE).unlink()
    dataset = read_jsonl(folder)
    assert dataset.class_names == () and len(dataset.tasks) == 2 and not dataset.samples


BAD = [
    (line("images/a.png", DENSE, BOX), "box [100, 200, 300, 400] has no caption", IssueKind.BAD_BOX),
    (line("images/a.png", DENSE, f"scratch{BOX}{OTHER}"),
     "'scratch' is followed by 8 <loc_N> tokens, needs exactly 4 (one box per caption)", IssueKind.BAD_BOX),
    (line("images/a.png", DENSE, "scratch<loc_1><loc_2><loc_3>"), "followed by 3 <loc_N> tokens", IssueKind.BAD_BOX),
    (line("images/a.png", DENSE, "scratch<loc_1><loc_2><loc_3><loc_1000>"),
     "'scratch' has a <loc_N> above 999: [1, 2, 3, 1000]", IssueKind.OUTSIDE),
    (line("images/a.png", DENSE, "scratch<loc_300><loc_2><loc_100><loc_9>"), "x2 < x1", IssueKind.EMPTY_BOX),
    (line("images/a.png", DENSE, "scratch<loc_1><loc_2>"), "'scratch' is followed by 2 <loc_N> tokens",
     IssueKind.BAD_BOX),
    (line("images/a.png", DENSE, f"scratch{BOX}<s"), "cannot parse '<s' at character 43", IssueKind.MALFORMED),
    (line("images/a.png", DENSE + "extra", ""), "takes no text after the token", IssueKind.MALFORMED),
    (line("images/a.png", DENSE, 7), "field 'suffix' is 7, expected a string", IssueKind.MALFORMED),
    (line("images/a.png", GROUND, ""), "without a phrase: write what to find after the token", IssueKind.MALFORMED),
    (line("images/a.png", f"{GROUND}scratch", f"hole{BOX}"),
     "field 'suffix' names 'hole', but the prompt asks for 'scratch'", IssueKind.BAD_BOX),
    (line("images/a.png", f"{GROUND}scratch", BOX), "comes before the phrase 'scratch'", IssueKind.BAD_BOX),
    (line("images/a.png", f"{GROUND}scr<atch", ""), "holds '<', '>' or a line break", IssueKind.MALFORMED),
    (line("images/z.png", DENSE, f"scratch{BOX}"), "missing image", IssueKind.MISSING_IMAGE),
    (line("images/b.png", "<CAPTION>", ""), "expected one of ['<OD>', '<DENSE_REGION_CAPTION>', "
     "'<CAPTION_TO_PHRASE_GROUNDING>']", IssueKind.MALFORMED),
]


@pytest.mark.parametrize(("bad", "message", "kind"), BAD)
def test_a_bad_region_task_line_is_refused_naming_file_line_and_value(tmp_path: Path, bad: str, message: str,
                                                                      kind: IssueKind) -> None:
    folder = write_set(tmp_path, [GOOD[0], bad])
    with pytest.raises(AnnotationError) as caught:
        read_jsonl(folder)
    (issue,) = caught.value.issues
    assert issue.location.file == folder / ANNOTATIONS and issue.location.line == 2
    assert issue.kind is kind
    assert str(issue).startswith(f"{folder / ANNOTATIONS}:2: ")
    assert message in issue.message, issue.message
    kept = read_jsonl(folder, skip_invalid=True)  # dropped, counted; the <OD> line stays
    assert len(kept.samples) == 1 and not kept.tasks
    assert kept.notes.dropped_task_lines + len(kept.notes.dropped_images) == 1


def test_two_answers_of_one_task_and_phrase_for_an_image_are_duplicates(tmp_path: Path) -> None:
    twice = [GOOD[1], line("images/a.png", DENSE, ""), GOOD[2], line("images/a.png", f"{GROUND} scratch ", "")]
    with pytest.raises(AnnotationError) as caught:
        read_jsonl(write_set(tmp_path, twice))
    assert sorted((i.location.line, i.kind) for i in caught.value.issues) == [
        (1, IssueKind.DUPLICATE), (2, IssueKind.DUPLICATE), (3, IssueKind.DUPLICATE), (4, IssueKind.DUPLICATE)]
    assert "more than one '<DENSE_REGION_CAPTION>' line (also at" in caught.value.issues[0].message


def test_writing_jsonl_keeps_every_line_and_reads_back_the_same(tmp_path: Path) -> None:
    dataset = read_jsonl(write_set(tmp_path / "in", GOOD))
    write_jsonl(dataset, tmp_path / "out")
    records = [json.loads(text) for text in (tmp_path / "out" / ANNOTATIONS).read_text().splitlines()]
    assert [r["prefix"] for r in records] == ["<OD>", DENSE, f"{GROUND}scratch", f"{GROUND}hole",
                                              f"{GROUND}oil spot", DENSE]
    assert records[4]["suffix"] == f"oil spot{BOX}{OTHER}"
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["a.png", "b.png", "c.png"]
    back = read_jsonl(tmp_path / "out")
    assert [(t.prompt, t.target()) for t in back.tasks] == [(t.prompt, t.target()) for t in dataset.tasks]


def test_formats_that_cannot_hold_region_tasks_refuse_instead_of_losing_them(tmp_path: Path) -> None:
    dataset = read_dataset("jsonl", write_set(tmp_path / "in", GOOD))
    for fmt in ("coco", "yolo", "voc"):
        with pytest.raises(ValueError, match=rf"{fmt} holds class-labelled boxes only: the set's 5 region-task "
                                             r"line\(s\) \(<CAPTION_TO_PHRASE_GROUNDING>, <DENSE_REGION_CAPTION>\)"):
            write_dataset(fmt, dataset, tmp_path / fmt)
        assert not (tmp_path / fmt).exists()


def test_a_split_sends_region_task_lines_with_their_image(tmp_path: Path) -> None:
    names = tuple(f"f{i}" for i in range(10))
    lines = [line(f"images/{n}.png", "<OD>", f"scratch{BOX}" if i % 2 else "") for i, n in enumerate(names[:6])]
    lines += [line(f"images/{n}.png", f"{GROUND}scratch", f"scratch{BOX}") for n in names]  # 4 images: tasks only
    dataset = read_jsonl(write_set(tmp_path / "in", lines, names))
    result = split_dataset(dataset, val=0.5, seed=1)
    od_split = {s.image.name: name for name, samples in result.splits.items() for s in samples}
    for name, tasks in result.tasks.items():
        for task in tasks:
            assert od_split.get(task.image.name, name) == name  # with its image's <OD> line, where it has one
    only = sorted(name for name, tasks in result.tasks.items() for t in tasks if t.image.name not in od_split)
    assert only == ["train", "train", "val", "val"]  # the task-only images are split like any stratum
    plain = split_dataset(read_jsonl(write_set(tmp_path / "od", lines[:6], names)), val=0.5, seed=1)
    assert od_split == {s.image.name: n for n, samples in plain.splits.items() for s in samples}
    written = write_splits(dataset, result.splits, tmp_path / "out", tasks=result.tasks)
    assert sum(len(read_jsonl(p.parent).tasks) for p in written.values()) == 10


def test_the_summary_counts_region_task_lines_apart_from_classes(tmp_path: Path) -> None:
    text = "\n".join(dataset_lines(read_jsonl(write_set(tmp_path, GOOD))))
    assert "1 images, 1 boxes" in text
    assert "<DENSE_REGION_CAPTION>               2 line(s), 2 box(es)" in text
    assert "<CAPTION_TO_PHRASE_GROUNDING>        3 line(s), 4 box(es), 3 phrase(s), 1 answer(s) 'not on the " \
           "frame'" in text
