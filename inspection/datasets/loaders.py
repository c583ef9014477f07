"""Dataset loaders: list the samples of an inspection dataset without decoding them.

Three layouts are understood:

``mvtec``
    MVTec AD: ``train/good/*``, ``test/<class>/*``, ``ground_truth/<class>/<stem>_mask.png``.
``folder``
    One folder per class, ``root/<class>/*``; masks optionally in ``root/<class>/masks/`` or
    ``root/masks/<class>/``; no split.
``manifest``
    A JSONL file, one object per image (the synthetic line writes these).

Loaders only list files (``os.scandir``), so they stay fast on 100k images; decoding and
validation is :mod:`inspection.datasets.check`'s job. A ``dataset.yaml`` next to the data
may state ``mm_per_px`` for the whole set.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from inspection.errors import UserError, one_line
from inspection.io import IMAGE_SUFFIXES, HeightEncoding, InputError, read_image

logger = logging.getLogger(__name__)

GOOD = "good"
GOOD_ALIASES = frozenset({"good", "ok", "normal", "pass"})
"""Folder names / labels meaning a defect-free part (case-insensitive); stored as ``good``."""

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
MANIFEST_NAME = "manifest.jsonl"
METADATA_NAME = "dataset.yaml"
_MASK_DIRS = frozenset({"masks", "ground_truth"})
# Fields of a manifest line that become Sample fields; every other field is an attribute.
_MANIFEST_FIELDS = frozenset({"image", "label", "split", "mask", "audio", "height", "part_id"})


class DatasetError(UserError):
    """A dataset that cannot be listed: unknown layout, malformed manifest or metadata."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset and what is known about it (nothing is decoded).

    Attributes
    ----------
    image : Path
        The image file.
    label : str
        ``"good"`` or a defect class.
    split : str | None
        ``"train"``, ``"val"``, ``"test"``, or ``None`` when the layout has no split.
    mask : Path | None
        Pixel mask of the defect, if the dataset has one for this image.
    audio : Path | None
        Tap-test / operator audio recorded with the part (manifests only).
    part_id : str
        Identifier of the part; unique within a well-formed dataset.
    attributes : Mapping[str, Any]
        Anything else the dataset states (``mm_per_px``, ``reference_rgb``, ``defects`` ...).
    """

    image: Path
    label: str = GOOD
    split: str | None = None
    mask: Path | None = None
    audio: Path | None = None
    height_map: Path | None = None
    part_id: str = ""
    # hash=False: dict values are unhashable, and the other fields identify a sample anyway
    attributes: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def is_good(self) -> bool:
        return self.label == GOOD


@dataclass(frozen=True)
class Dataset:
    """The samples of one dataset, in a stable order.

    Attributes
    ----------
    root : Path
        The dataset folder (the manifest's folder for a manifest).
    layout : str
        ``"mvtec"``, ``"folder"`` or ``"manifest"``.
    samples : tuple[Sample, ...]
    metadata : Mapping[str, Any]
        Contents of ``dataset.yaml`` at the root, if any.
    orphan_masks : tuple[Path, ...]
        Mask files found in the mask folders that belong to no image.
    """

    root: Path
    layout: str
    samples: tuple[Sample, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    orphan_masks: tuple[Path, ...] = ()

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def classes(self) -> list[str]:
        """Sorted defect classes present in the samples (``good`` excluded)."""
        return sorted({s.label for s in self.samples if not s.is_good})

    @property
    def products(self) -> list[str]:
        """Sorted products the samples show: each sample's ``product``, else the one
        ``dataset.yaml`` states; ``[]`` when the data does not say (a folder of photos)."""
        named = {s.attributes.get("product") for s in self.samples} - {None}
        if not named and self.metadata.get("product") is not None:
            named = {self.metadata["product"]}
        return sorted(str(p) for p in named)

    @property
    def mm_per_px(self) -> float | None:
        """Scale from ``dataset.yaml``, else the one value every sample states, else ``None``."""
        if self.metadata.get("mm_per_px") is not None:
            return float(self.metadata["mm_per_px"])
        values = {s.attributes.get("mm_per_px") for s in self.samples}
        if len(values) == 1 and (value := values.pop()) is not None:
            return float(value)
        return None  # unstated, or different per sample: see each sample's attributes

    def scale_of(self, sample: Sample) -> float | None:
        """One sample's scale in mm per pixel: its own, else the dataset's
        (:attr:`mm_per_px`); ``None`` when neither states one."""
        return sample.attributes.get("mm_per_px", self.mm_per_px)

    @cached_property
    def height_encoding(self) -> HeightEncoding | None:
        """How the dataset's integer height maps read in mm (``dataset.yaml``'s
        ``height_encoding``); ``None`` where it states none (its maps are float mm).
        Parsed once: every sample's height map is read through it."""
        return metadata_height_encoding(self.metadata)

    def reference_of(self, sample: Sample) -> Sequence[int] | None:
        """One sample's reference colour (RGB, what colour deviation is read against): its
        own, else the one ``dataset.yaml`` states; ``None`` when neither does."""
        return sample.attributes.get("reference_rgb", self.metadata.get("reference_rgb"))

    def split(self, name: str | None) -> Dataset:
        """The samples of one split (``None``: samples without a split), as a dataset."""
        if name is not None and name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {', '.join(SPLITS)}")
        return replace(self, samples=tuple(s for s in self.samples if s.split == name))

    def counts(self) -> dict[str | None, dict[str, int]]:
        """Number of samples per split and label: ``{split: {label: n}}``, good first."""
        counts: dict[str | None, dict[str, int]] = {}
        for s in self.samples:
            per_label = counts.setdefault(s.split, {})
            per_label[s.label] = per_label.get(s.label, 0) + 1
        order = {name: i for i, name in enumerate(SPLITS)}
        return {
            split: dict(sorted(labels.items(), key=lambda kv: (kv[0] != GOOD, kv[0])))
            for split, labels in sorted(counts.items(), key=lambda kv: order.get(kv[0], 99))
        }


def normalize_label(label: str) -> str:
    """``good`` for any defect-free alias (``OK``, ``normal``, ``pass``), else unchanged."""
    return GOOD if label.lower() in GOOD_ALIASES else label


# ---------------------------------------------------------------------------------------
# MVTec AD


def load_mvtec(root: str | Path) -> Dataset:
    """List an MVTec AD style dataset.

    Parameters
    ----------
    root : str | Path
        Folder holding ``train/`` and/or ``test/`` (and ``val/``), each with one folder per
        class, and ``ground_truth/<class>/`` with ``<stem>_mask.<ext>`` or ``<stem>.<ext>``.

    Returns
    -------
    Dataset
        Good images have no mask; a defective image whose mask is missing gets
        ``mask=None`` (the checker reports it). Unused mask files are ``orphan_masks``.

    Raises
    ------
    DatasetError
        If there is no split folder or no image.
    """
    root = Path(root)
    split_dirs = {
        _SPLIT_ALIASES[d.name.lower()]: Path(d.path)
        for d in _subdirs(root)
        if d.name.lower() in _SPLIT_ALIASES
    }
    if not split_dirs:
        raise DatasetError(f"{root}: not an MVTec AD dataset (no train/ or test/ folder)")
    masks: dict[str, dict[str, Path]] = {}
    mask_files: set[Path] = set()
    for class_dir in _subdirs(root / "ground_truth"):
        masks[class_dir.name], files = _mask_index(Path(class_dir.path))
        mask_files.update(files)

    used: set[Path] = set()
    samples = []
    for split in SPLITS:
        if split not in split_dirs:
            continue
        for class_dir in _subdirs(split_dirs[split]):
            label = normalize_label(class_dir.name)
            class_masks = {} if label == GOOD else masks.get(class_dir.name, {})
            for image in _image_files(Path(class_dir.path)):
                mask = class_masks.get(image.stem)
                if mask is not None:
                    used.add(mask)
                samples.append(
                    Sample(
                        image=image,
                        label=label,
                        split=split,
                        mask=mask,
                        part_id=f"{split}/{class_dir.name}/{image.stem}",
                    )
                )
    if not samples:
        raise DatasetError(f"{root}: no image files under {', '.join(sorted(split_dirs))}")
    orphans = sorted(mask_files - used)
    return Dataset(
        root=root,
        layout="mvtec",
        samples=tuple(samples),
        metadata=read_metadata(root),
        orphan_masks=tuple(orphans),
    )


# ---------------------------------------------------------------------------------------
# Folder per class


def load_folder(root: str | Path) -> Dataset:
    """List a folder-per-class dataset: ``root/<class>/*.<image suffix>``.

    Folders named ``good``, ``ok``, ``normal`` or ``pass`` (any case) hold good parts.
    Masks, when present, live in ``root/<class>/masks/`` or ``root/masks/<class>/`` as
    ``<stem>.<ext>`` or ``<stem>_mask.<ext>``. Samples have no split.

    Raises
    ------
    DatasetError
        If no class folder holds an image.
    """
    root = Path(root)
    shared_masks: dict[str, dict[str, Path]] = {}
    mask_files: set[Path] = set()
    for class_dir in _subdirs(root / "masks"):
        shared_masks[class_dir.name], files = _mask_index(Path(class_dir.path))
        mask_files.update(files)

    used: set[Path] = set()
    samples = []
    for class_dir in _subdirs(root):
        if class_dir.name.lower() in _MASK_DIRS:
            continue
        label = normalize_label(class_dir.name)
        own_masks, files = _mask_index(Path(class_dir.path) / "masks")
        mask_files.update(files)
        class_masks = {**shared_masks.get(class_dir.name, {}), **own_masks}
        for image in _image_files(Path(class_dir.path)):
            mask = class_masks.get(image.stem)
            if mask is not None:
                used.add(mask)
            samples.append(
                Sample(
                    image=image, label=label, mask=mask, part_id=f"{class_dir.name}/{image.stem}"
                )
            )
    if not samples:
        raise DatasetError(
            f"{root}: no images found: expected one folder of images per class "
            f"(e.g. {root}/good/*.png, {root}/scratch/*.png)"
        )
    return Dataset(
        root=root,
        layout="folder",
        samples=tuple(samples),
        metadata=read_metadata(root),
        orphan_masks=tuple(sorted(mask_files - used)),
    )


# ---------------------------------------------------------------------------------------
# JSONL manifest


def load_manifest(path: str | Path) -> Dataset:
    """List a JSONL manifest: one JSON object per line, at least ``{"image": ...}``.

    Recognised fields are ``image``, ``label`` (default ``"good"``), ``split``, ``mask``,
    ``audio`` and ``part_id`` (default: the image's stem); every other field is kept in
    :attr:`Sample.attributes`. Relative paths are relative to the manifest's folder.
    Blank lines are skipped.

    Raises
    ------
    DatasetError
        For an unreadable file, or a malformed line (the message names file and line).
    """
    samples, problems = parse_manifest(path)
    if problems:
        line, message = problems[0]
        more = f" (and {len(problems) - 1} more malformed lines)" if len(problems) > 1 else ""
        raise DatasetError(f"{path}:{line}: {message}{more}")
    return _manifest_dataset(Path(path), samples)


def merge_datasets(sources: list[str | Path], out: str | Path) -> Path:
    """One manifest listing every sample of several datasets, to train one model on them.

    Nothing is copied: ``OUT/manifest.jsonl`` names each source's files by their path
    relative to ``OUT``. What a source's ``dataset.yaml`` states for the whole set
    (``product``, ``mm_per_px``) is written on each of its samples that does not state it,
    so a model trained on the merge records every product it saw.

    Parameters
    ----------
    sources : list of str or Path
        Datasets in any layout :func:`load_dataset` reads (at least one).
    out : str or Path
        Folder to write ``manifest.jsonl`` into; created, and refused if it holds one.

    Returns
    -------
    Path
        The manifest written.

    Raises
    ------
    DatasetError
        No source, an unreadable source, or ``OUT`` already holding a manifest. A part id
        an earlier source already used is prefixed with its source's folder name (two
        MVTec folders both have ``train/good/000``); one still taken is an error.
    """
    if not sources:
        raise DatasetError("nothing to merge: give at least one dataset")
    out = Path(out)
    manifest = out / MANIFEST_NAME
    if manifest.exists():
        raise DatasetError(f"{manifest} exists: merge into a new folder")
    lines, owner = [], {}
    for source in sources:
        dataset = load_dataset(source)
        for sample in dataset.samples:
            part_id = sample.part_id
            if part_id in owner:  # two MVTec folders both have train/good/000
                part_id = f"{Path(source).name}/{part_id}"
            if part_id in owner:
                raise DatasetError(
                    f"part {sample.part_id!r} is in both {owner[part_id]} and {source}, "
                    "under the same folder name: part ids must be unique in a merged dataset"
                )
            owner[part_id] = source
            entry = _manifest_entry(replace(sample, part_id=part_id), dataset.metadata, out)
            lines.append(json.dumps(entry))
    out.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def _manifest_entry(sample: Sample, metadata: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A manifest line for ``sample`` with paths relative to ``base``."""

    def relative(path: Path | None) -> str | None:
        return None if path is None else os.path.relpath(path.resolve(), base.resolve())

    inherited = {k: metadata[k] for k in ("product", "mm_per_px") if metadata.get(k) is not None}
    return {
        **inherited,
        **sample.attributes,
        "part_id": sample.part_id,
        "split": sample.split,
        "label": sample.label,
        "image": relative(sample.image),
        "mask": relative(sample.mask),
        "audio": relative(sample.audio),
        **({"height": relative(sample.height_map)} if sample.height_map is not None else {}),
    }


def parse_manifest(path: str | Path) -> tuple[list[Sample], list[tuple[int, str]]]:
    """Parse a manifest leniently: the valid samples and ``(line, message)`` per bad line.

    The checker uses this to report every malformed line at once; :func:`load_manifest`
    raises on the first.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read manifest ({exc})") from exc
    samples: list[Sample] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            samples.append(_manifest_sample(line, path.parent))
        except DatasetError as exc:
            problems.append((number, str(exc)))
    if not samples and not problems:
        problems.append((1, "manifest has no entries"))
    return samples, problems


def _manifest_sample(line: str, base: Path) -> Sample:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(entry, dict):
        raise DatasetError(f"expected a JSON object, got {type(entry).__name__}")
    image = entry.get("image")
    if not isinstance(image, str) or not image:
        raise DatasetError('missing or empty "image" (a path string is required)')
    label = entry.get("label", GOOD)
    if not isinstance(label, str) or not label:
        raise DatasetError(f'"label" must be a non-empty string, got {label!r}')
    split = entry.get("split")
    if split is not None:
        if not isinstance(split, str) or split.lower() not in _SPLIT_ALIASES:
            raise DatasetError(f'"split" must be one of {", ".join(SPLITS)} or null, got {split!r}')
        split = _SPLIT_ALIASES[split.lower()]
    part_id = entry.get("part_id", Path(image).stem)
    if not isinstance(part_id, str | int) or isinstance(part_id, bool):
        raise DatasetError(f'"part_id" must be a string, got {part_id!r}')
    return Sample(
        image=_resolve(base, image),
        label=normalize_label(label),
        split=split,
        mask=_optional_path(entry, "mask", base),
        audio=_optional_path(entry, "audio", base),
        height_map=_optional_path(entry, "height", base),
        part_id=str(part_id),
        attributes={k: v for k, v in entry.items() if k not in _MANIFEST_FIELDS},
    )


def _optional_path(entry: dict[str, Any], key: str, base: Path) -> Path | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise DatasetError(f'"{key}" must be a path string or null, got {value!r}')
    return _resolve(base, value)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


def _manifest_dataset(path: Path, samples: list[Sample]) -> Dataset:
    return Dataset(
        root=path.parent,
        layout="manifest",
        samples=tuple(samples),
        metadata=read_metadata(path.parent),
    )


# ---------------------------------------------------------------------------------------
# Auto-detection


def detect_layout(path: str | Path) -> str:
    """``"manifest"``, ``"mvtec"`` or ``"folder"``; raises :class:`DatasetError` otherwise."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".jsonl":
            return "manifest"
        raise DatasetError(f"{path}: expected a .jsonl manifest or a dataset folder")
    if (path / MANIFEST_NAME).is_file():
        return "manifest"
    names = {d.name.lower() for d in _subdirs(path)}
    if names & {"train", "test"}:
        return "mvtec"
    if any(_image_files(Path(d.path)) for d in _subdirs(path) if d.name.lower() not in _MASK_DIRS):
        return "folder"
    raise DatasetError(
        f"{path}: unknown dataset layout: expected a {MANIFEST_NAME} manifest, MVTec AD "
        "train/ and test/ folders, or one folder of images per class (good/, scratch/ ...)"
    )


def load_dataset(path: str | Path) -> Dataset:
    """Load a dataset, detecting its layout.

    A ``.jsonl`` file, or a folder holding ``manifest.jsonl``, is a manifest; a folder with
    ``train/`` or ``test/`` is MVTec AD; a folder of image folders is folder-per-class.

    Raises
    ------
    DatasetError
        When the path matches no layout (the message says what was expected), or a
        manifest / ``dataset.yaml`` is malformed.
    """
    path = Path(path)
    layout = detect_layout(path)
    if layout == "manifest":
        return load_manifest(path if path.is_file() else path / MANIFEST_NAME)
    if layout == "mvtec":
        return load_mvtec(path)
    return load_folder(path)


def read_metadata(root: Path) -> dict[str, Any]:
    """Contents of ``root/dataset.yaml`` (``{}`` when absent), with ``mm_per_px`` checked."""
    path = root / METADATA_NAME
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read dataset metadata ({one_line(exc)})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping at the top level")
    scale = data.get("mm_per_px")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0
    ):
        raise DatasetError(f"{path}: mm_per_px must be a positive number, got {scale!r}")
    try:
        metadata_height_encoding(data, str(path))
    except UserError as exc:
        raise DatasetError(str(exc)) from exc
    return data


def metadata_height_encoding(
    metadata: Mapping[str, Any], where: str = METADATA_NAME
) -> HeightEncoding | None:
    """The ``height_encoding`` a dataset's metadata states (``{scale_mm, offset_mm,
    invalid}``: how its integer height maps read in mm), or ``None``."""
    data = metadata.get("height_encoding")
    return None if data is None else HeightEncoding.from_mapping(data, f"{where}: height_encoding")


# ---------------------------------------------------------------------------------------
# Iteration


def iter_images(dataset: Dataset, split: str | None = None) -> Iterator[tuple[Sample, np.ndarray]]:
    """Yield ``(sample, image)`` with images read by :func:`inspection.io.read_image`.

    Parameters
    ----------
    dataset : Dataset
    split : str | None
        Only this split; ``None`` yields every sample.

    Notes
    -----
    A file that cannot be read is skipped with a logged warning, so one bad image does
    not stop a training or evaluation run; ``check_dataset`` lists them all.
    """
    samples = dataset.split(split) if split is not None else dataset
    for sample in samples:
        try:
            image = read_image(sample.image)
        except InputError as exc:
            logger.warning("skipping %s", exc)
            continue
        yield sample, image


# ---------------------------------------------------------------------------------------
# File listing helpers


def _subdirs(path: Path) -> list[os.DirEntry[str]]:
    """Visible sub-folders of ``path`` by name (``[]`` if it is not a folder)."""
    try:
        with os.scandir(path) as entries:
            dirs = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(dirs, key=lambda e: e.name)


def _image_files(path: Path) -> list[Path]:
    """Visible files of ``path`` with an image suffix (any case), by name."""
    try:
        with os.scandir(path) as entries:
            files = [
                Path(e.path)
                for e in entries
                if not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
                and e.is_file()
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(files)


def _mask_index(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """Masks of a folder by the image stem they belong to, and every mask file there.

    ``x_mask.png`` and ``x.png`` both belong to image ``x``; the ``_mask`` name wins
    (MVTec's convention) and the other, never used, is reported as an orphan.
    """
    files = _image_files(folder)
    index: dict[str, Path] = {}
    for path in files:
        stem = path.stem
        key = stem.removesuffix("_mask")
        if key not in index or stem.endswith("_mask"):
            index[key] = path
    return index, files
