"""Detection data sets: one model (`Dataset` of `Sample`s), readers/writers per format, validation, conversion.

Formats: Florence JSONL (`jsonl.py`), COCO (`coco.py`), Pascal VOC (`voc.py`), YOLO (`yolo.py`), DeepPCB
(`deeppcb.py`, read only); `convert.py` dispatches by format name; `synth.py` writes synthetic sets.
"""

from finetune.data.convert import ReadOptions, convert, read_dataset, write_dataset
from finetune.data.dataset import Dataset, Sample
from finetune.data.issues import AnnotationError, AnnotationIssue

__all__ = [
    "AnnotationError", "AnnotationIssue", "Dataset", "ReadOptions", "Sample", "convert", "read_dataset",
    "write_dataset",
]
