"""Dataset loaders: MVTec AD, folder per class, JSONL manifest, auto-detection."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from dataset_builders import (
    magnetic_tile_dir,
    make_folder,
    make_manifest,
    make_mvtec,
    synth_entry,
    write_manifest,
)

from inspection.datasets import (
    Dataset,
    DatasetError,
    Sample,
    iter_images,
    load_dataset,
    load_folder,
    load_manifest,
    load_mvtec,
)

# --- MVTec AD -----------------------------------------------------------------------------


def test_mvtec_counts_classes_and_masks(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    dataset = load_mvtec(root)

    assert dataset.layout == "mvtec"
    assert dataset.counts() == {
        "train": {"good": 4},
        "test": {"good": 2, "crack": 2, "scratch": 1},
    }
    assert dataset.classes == ["crack", "scratch"]
    for sample in dataset:
        if sample.is_good:
            assert sample.mask is None
        else:
            assert sample.mask is not None and sample.mask.is_file()
            assert sample.mask.parent.name == sample.label
    scratch = next(s for s in dataset if s.label == "scratch")
    assert scratch.image.suffix == ".jpg"
    assert scratch.mask == root / "ground_truth/scratch/000.png"  # stem without ``_mask``
    assert len({s.part_id for s in dataset}) == len(dataset)  # 000.png repeats per class
    assert dataset.orphan_masks == ()
    assert dataset.mm_per_px is None


def test_mvtec_missing_mask_is_none_and_unused_mask_is_orphan(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    (root / "ground_truth/crack/001_mask.png").rename(root / "ground_truth/crack/999_mask.png")
    dataset = load_mvtec(root)

    crack_1 = next(s for s in dataset if s.label == "crack" and s.image.stem == "001")
    assert crack_1.mask is None
    assert dataset.orphan_masks == (root / "ground_truth/crack/999_mask.png",)


def test_mvtec_without_split_folders_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no train/ or test/"):
        load_mvtec(tmp_path / "empty")


def test_loaders_list_files_without_decoding(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    (root / "train/good/broken.png").write_text("not an image")
    (root / "train/good/notes.txt").write_text("ignored: not an image suffix")
    dataset = load_mvtec(root)
    assert root / "train/good/broken.png" in {s.image for s in dataset}
    assert dataset.counts()["train"] == {"good": 5}


# --- Folder per class ---------------------------------------------------------------------


def test_folder_per_class(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "folder")
    dataset = load_folder(root)

    assert dataset.layout == "folder"
    assert dataset.counts() == {None: {"good": 4, "dent": 2, "scratch": 1}}  # OK/ is good
    assert dataset.classes == ["dent", "scratch"]
    assert all(s.split is None for s in dataset)
    masks = {s.image.name: s.mask for s in dataset if not s.is_good}
    assert masks == {
        "d0.png": root / "dent/masks/d0_mask.png",
        "d1.png": root / "dent/masks/d1_mask.png",
        "s0.png": root / "masks/scratch/s0.png",
    }
    assert "masks" not in dataset.classes
    assert dataset.split(None).samples == dataset.samples


def test_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "folder/good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found"):
        load_folder(tmp_path / "folder")


# --- Manifest -----------------------------------------------------------------------------


def test_manifest_fields_and_attributes(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "synth")
    dataset = load_manifest(manifest)

    assert dataset.layout == "manifest"
    assert dataset.root == manifest.parent
    assert dataset.counts() == {"train": {"good": 3}, "test": {"good": 1, "crack": 2}}
    assert dataset.mm_per_px == pytest.approx(0.1)  # every line states the same scale
    assert dataset.products == ["tile"]

    crack = next(s for s in dataset if s.label == "crack")
    assert crack.image == manifest.parent / "images" / f"{crack.part_id}.png"
    assert crack.mask is not None and crack.mask.is_file()
    assert crack.audio is not None and crack.audio.is_file()
    expected = synth_entry(int(crack.part_id[1:]), "test", "crack")
    for key in ("image", "mask", "audio", "part_id", "split", "label"):
        expected.pop(key)
    assert dict(crack.attributes) == expected  # every extra field, defects list included


def test_manifest_defaults_and_absolute_paths(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere/x.png"
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            {"image": "a/b/part7.png"},
            "",  # blank lines are skipped
            {"image": str(absolute), "label": "Normal", "split": "validation", "part_id": 12},
        ],
    )
    first, second = load_manifest(manifest).samples
    assert first == Sample(image=tmp_path / "a/b/part7.png", part_id="part7")
    assert first.label == "good" and first.split is None and first.attributes == {}
    assert second.image == absolute
    assert second.label == "good"  # "Normal" is a good alias
    assert second.split == "val"
    assert second.part_id == "12"


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"image": "a.png", ', "invalid JSON"),
        ('["a.png"]', "expected a JSON object"),
        ('{"label": "crack"}', '"image"'),
        ('{"image": "a.png", "split": "holdout"}', '"split"'),
        ('{"image": "a.png", "mask": 3}', '"mask"'),
    ],
)
def test_malformed_manifest_line_names_file_and_line(
    tmp_path: Path, bad_line: str, reason: str
) -> None:
    manifest = write_manifest(
        tmp_path / "manifest.jsonl", [{"image": "a.png"}, {"image": "b.png"}, bad_line]
    )
    with pytest.raises(DatasetError, match=reason) as info:
        load_manifest(manifest)
    assert f"{manifest}:3:" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_manifest_is_an_error(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n\n")
    with pytest.raises(DatasetError, match="no entries"):
        load_manifest(manifest)


# --- Auto-detection and metadata ----------------------------------------------------------


def test_load_dataset_detects_each_layout(tmp_path: Path) -> None:
    mvtec = make_mvtec(tmp_path / "mvtec")
    folder = make_folder(tmp_path / "folder")
    manifest = make_manifest(tmp_path / "synth")

    assert load_dataset(mvtec).layout == "mvtec"
    assert load_dataset(folder).layout == "folder"
    assert load_dataset(manifest).layout == "manifest"  # the .jsonl file
    assert load_dataset(manifest.parent).layout == "manifest"  # its folder
    assert load_dataset(manifest.parent) == load_dataset(manifest)


def test_unknown_layout_names_path_and_expectations(tmp_path: Path) -> None:
    root = tmp_path / "junk"
    (root / "sub").mkdir(parents=True)
    (root / "sub/readme.txt").write_text("hello")
    with pytest.raises(DatasetError, match="unknown dataset layout") as info:
        load_dataset(root)
    assert str(root) in str(info.value)
    assert "manifest.jsonl" in str(info.value) and "train/" in str(info.value)

    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "labels.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"\.jsonl"):
        load_dataset(tmp_path / "labels.csv")


def test_dataset_yaml_states_the_scale(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    (root / "dataset.yaml").write_text("name: tiles\nmm_per_px: 0.05\n")
    dataset = load_dataset(root)
    assert dataset.mm_per_px == pytest.approx(0.05)
    assert dataset.metadata["name"] == "tiles"

    (root / "dataset.yaml").write_text("mm_per_px: -1\n")
    with pytest.raises(DatasetError, match="mm_per_px"):
        load_dataset(root)


def test_manifest_scale_is_none_when_lines_disagree(tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [{"image": "a.png", "mm_per_px": 0.1}, {"image": "b.png", "mm_per_px": 0.2}],
    )
    assert load_manifest(manifest).mm_per_px is None


def test_a_samples_own_scale_and_reference_colour_come_before_the_datasets(
    tmp_path: Path,
) -> None:
    (tmp_path / "dataset.yaml").write_text("mm_per_px: 0.3\nreference_rgb: [10, 20, 30]\n")
    own = {"image": "a.png", "mm_per_px": 0.1, "reference_rgb": [1, 2, 3]}
    write_manifest(tmp_path / "manifest.jsonl", [own, {"image": "b.png"}])
    dataset = load_dataset(tmp_path)
    stating, silent = dataset.samples
    assert dataset.scale_of(stating) == pytest.approx(0.1)
    assert dataset.scale_of(silent) == pytest.approx(0.3)
    assert dataset.reference_of(stating) == [1, 2, 3]
    assert dataset.reference_of(silent) == [10, 20, 30]

    (tmp_path / "bare").mkdir()
    bare = load_manifest(write_manifest(tmp_path / "bare/m.jsonl", [{"image": "b.png"}]))
    assert bare.scale_of(bare.samples[0]) is None
    assert bare.reference_of(bare.samples[0]) is None


def test_split_filter(tmp_path: Path) -> None:
    dataset = load_dataset(make_mvtec(tmp_path / "mvtec"))
    test = dataset.split("test")
    assert isinstance(test, Dataset)
    assert len(test) == 5 and {s.split for s in test} == {"test"}
    assert test.classes == ["crack", "scratch"]
    with pytest.raises(ValueError, match="unknown split"):
        dataset.split("valid")


def test_samples_are_frozen_and_hashable(tmp_path: Path) -> None:
    dataset = load_manifest(make_manifest(tmp_path / "synth"))
    sample = dataset.samples[0]
    with pytest.raises(AttributeError):
        sample.label = "crack"  # type: ignore[misc]
    assert len(set(dataset.samples)) == len(dataset)


def test_iter_images_skips_unreadable_files_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    (root / "train/good/zero.png").write_bytes(b"")
    dataset = load_dataset(root)
    with caplog.at_level(logging.WARNING, logger="inspection.datasets.loaders"):
        read = list(iter_images(dataset, split="train"))
    assert len(read) == 4
    assert all(isinstance(image, np.ndarray) and image.shape == (64, 64) for _, image in read)
    assert "zero.png" in caplog.text and "empty file" in caplog.text


# --- Real data ----------------------------------------------------------------------------

MAGNETIC_TILE = magnetic_tile_dir()


@pytest.mark.skipif(
    not MAGNETIC_TILE.is_dir(),
    reason=f"shared magnetic-tile data not found at {MAGNETIC_TILE} "
    "(read-only data outside the repository; set INSPECTION_SHARED_DATA to its folder)",
)
def test_magnetic_tile_counts() -> None:
    dataset = load_dataset(MAGNETIC_TILE)
    assert dataset.layout == "mvtec"
    counts = dataset.counts()
    assert counts["train"] == {"good": 666}
    assert counts["test"]["good"] == 286
    assert dataset.classes == ["blowhole", "break", "crack", "fray", "uneven"]
    defective = [s for s in dataset if not s.is_good]
    assert len(defective) == 392
    assert all(s.mask is not None for s in defective)
    assert dataset.orphan_masks == ()
    json.dumps({str(k): v for k, v in counts.items()})  # plain ints and strings


# --- Merge --------------------------------------------------------------------------------


def test_merged_datasets_keep_every_sample_its_files_and_its_product(tmp_path: Path) -> None:
    from inspection.datasets import merge_datasets

    tiles = make_manifest(tmp_path / "tiles").parent
    first, second = make_mvtec(tmp_path / "a/bracket"), make_mvtec(tmp_path / "b/panel", seed=1)
    (first / "dataset.yaml").write_text("product: bracket\nmm_per_px: 0.2\n")
    manifest = merge_datasets([tiles, first, second], tmp_path / "merged")

    merged = load_dataset(manifest.parent)
    sources = [load_dataset(d) for d in (tiles, first, second)]
    assert len(merged.samples) == sum(len(d.samples) for d in sources)
    assert merged.products == ["bracket", "tile"]  # the MVTec folder's dataset.yaml, inherited
    by_image = {s.image.resolve(): s for s in merged.samples}
    for source in sources:
        for sample in source.samples:
            copy = by_image[sample.image.resolve()]  # the same file, not a copy of it
            assert (copy.label, copy.split) == (sample.label, sample.split)
            assert (copy.mask and copy.mask.resolve()) == (sample.mask and sample.mask.resolve())
    assert by_image[(first / "train/good/000.png").resolve()].attributes["mm_per_px"] == 0.2
    # the second MVTec folder's ids collide with the first's: prefixed with its folder name
    ids = [s.part_id for s in merged.samples]
    assert len(set(ids)) == len(ids) and "panel/train/good/000" in ids

    with pytest.raises(DatasetError, match="exists"):
        merge_datasets([tiles], tmp_path / "merged")
    with pytest.raises(DatasetError, match="same folder name"):
        merge_datasets([first, first, first], tmp_path / "thrice")
    with pytest.raises(DatasetError, match="at least one"):
        merge_datasets([], tmp_path / "none")
