"""Inspection datasets: list them (MVTec AD, folder per class, JSONL manifest) and check them.

>>> from inspection.datasets import load_dataset, check_dataset
>>> dataset = load_dataset("data/tiles")          # doctest: +SKIP
>>> dataset.counts()                              # doctest: +SKIP
{'train': {'good': 666}, 'test': {'good': 286, 'crack': 57, ...}}
>>> report = check_dataset("data/tiles")          # doctest: +SKIP
>>> report.ok, report.errors[:1]                  # doctest: +SKIP
"""

from inspection.datasets.check import (
    CheckReport,
    DuplicateGroup,
    Issue,
    check_dataset,
    print_check_report,
)
from inspection.datasets.loaders import (
    Dataset,
    DatasetError,
    Sample,
    iter_images,
    load_dataset,
    load_folder,
    load_manifest,
    load_mvtec,
    merge_datasets,
)

__all__ = [
    "CheckReport",
    "Dataset",
    "DatasetError",
    "DuplicateGroup",
    "Issue",
    "Sample",
    "check_dataset",
    "iter_images",
    "load_dataset",
    "load_folder",
    "load_manifest",
    "load_mvtec",
    "merge_datasets",
    "print_check_report",
]
