"""Detection data sets: one model (`Dataset` of `Sample`s), readers/writers per format, validation, conversion.

Formats: Florence JSONL (`jsonl.py`; its region-caption and phrase-grounding lines: `tasks.py`), COCO (`coco.py`),
Pascal VOC (`voc.py`), YOLO (`yolo.py`), DeepPCB (`deeppcb.py`, read only); `validate.py` checks what they parse
(every image decoded); `convert.py` dispatches by format name; `report.py` summarises and lists problems
(`data validate`); `split.py` makes stratified splits; `layouts.py` is the folder-layout help; `synth.py` writes
synthetic sets. See docs/data.md.
"""

from finetune.data.convert import ReadOptions, convert, read_dataset, write_dataset
from finetune.data.dataset import Dataset, Sample
from finetune.data.issues import AnnotationError, AnnotationIssue, IssueKind

__all__ = [
    "AnnotationError", "AnnotationIssue", "Dataset", "IssueKind", "ReadOptions", "Sample", "convert", "read_dataset",
    "write_dataset",
]
