"""Dataset checker: every kind of broken file is reported, good data passes, no crash."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from dataset_builders import (
    SIZE,
    blob_mask,
    magnetic_tile_dir,
    make_folder,
    make_manifest,
    make_mvtec,
    synth_entry,
    texture,
    write,
    write_manifest,
    write_wav,
)
from rich.console import Console

from inspection.datasets import CheckReport, check_dataset, load_dataset, print_check_report
from inspection.datasets.check import MAX_HASH_DISTANCE, candidate_pairs, image_info


def kinds(issues) -> set[tuple[str, Path]]:
    return {(issue.kind, issue.path) for issue in issues}


# --- Good data ----------------------------------------------------------------------------


def test_good_mvtec_dataset_is_ok(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    report = check_dataset(root, progress=False)

    assert report.ok, report.errors
    assert report.warnings == ()
    assert report.duplicates == ()
    assert report.layout == "mvtec"
    assert report.n_samples == 9
    assert report.counts == {"train": {"good": 4}, "test": {"good": 2, "crack": 2, "scratch": 1}}
    assert report.images == {
        "count": 9,
        "width": [SIZE, SIZE],
        "height": [SIZE, SIZE],
        "dtypes": {"uint8": 9},
        "channels": {"1": 9},
    }


def test_good_folder_and_manifest_datasets_are_ok(tmp_path: Path) -> None:
    folder = check_dataset(make_folder(tmp_path / "folder"), progress=False)
    assert folder.ok and folder.warnings == ()
    assert folder.counts == {"unsplit": {"good": 4, "dent": 2, "scratch": 1}}

    manifest = check_dataset(make_manifest(tmp_path / "synth"), progress=False)
    assert manifest.ok and manifest.warnings == ()
    assert manifest.images["channels"] == {"3": 6}
    assert manifest.audio["count"] == 6
    assert manifest.audio["duration_s"] == pytest.approx([0.5, 0.5])


# --- Broken files -------------------------------------------------------------------------


def test_broken_images_and_masks_are_reported(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    rng = np.random.default_rng(5)
    zero = root / "train/good/zero.png"
    zero.write_bytes(b"")
    truncated = root / "train/good/truncated.png"
    data = cv2.imencode(".png", texture(rng))[1].tobytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = root / "test/good/text.png"
    text.write_text("this is not a PNG\n")
    misaligned = root / "ground_truth/crack/000_mask.png"
    write(misaligned, blob_mask(rng, size=32))
    missing = root / "test/crack/001.png"
    (root / "ground_truth/crack/001_mask.png").unlink()
    orphan = write(root / "ground_truth/crack/123_mask.png", blob_mask(rng))
    write(root / "test/crack/002.png", texture(rng))
    empty = write(root / "ground_truth/crack/002_mask.png", np.zeros((SIZE, SIZE), np.uint8))

    report = check_dataset(root, progress=False)

    assert not report.ok
    assert kinds(report.errors) == {
        ("unreadable_image", zero),
        ("unreadable_image", truncated),
        ("unreadable_image", text),
        ("misaligned_mask", misaligned),
        ("missing_mask", missing),
    }
    assert kinds(report.warnings) == {("orphan_mask", orphan), ("empty_mask", empty)}
    messages = {issue.path: issue.message for issue in report.errors}
    assert "empty file" in messages[zero]
    assert "not a readable image" in messages[text]
    assert "32x32" in messages[misaligned] and "64x64" in messages[misaligned]
    assert report.images["count"] == 10  # 13 images, the three unreadable left out


def test_broken_manifest_audio_and_lines_are_reported(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "synth")
    root = manifest.parent
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    empty = write_wav(root / "audio/empty.wav", np.zeros(0, np.float32))
    nan = write_wav(root / "audio/nan.wav", np.full(800, np.nan, np.float32), subtype="FLOAT")
    silent = write_wav(root / "audio/silent.wav", np.zeros(800, np.float32))
    entries[0]["audio"] = "audio/empty.wav"
    entries[1]["audio"] = "audio/nan.wav"
    entries[2]["audio"] = "audio/silent.wav"
    entries[3]["audio"] = "audio/gone.wav"
    entries[4]["mask"] = None  # a defect the manifest says has no mask
    write_manifest(manifest, [*entries, '{"image": "images/P0000.png"', {"label": "crack"}])

    report = check_dataset(manifest, progress=False)

    assert kinds(report.errors) == {
        ("unreadable_audio", empty),
        ("unreadable_audio", nan),
        ("missing_file", root / "audio/gone.wav"),
        ("manifest", manifest),
    }
    messages = {(e.kind, e.path): e.message for e in report.errors if e.kind != "manifest"}
    assert "empty audio" in messages[("unreadable_audio", empty)]
    assert "NaN" in messages[("unreadable_audio", nan)]
    lines = sorted(e.message for e in report.errors if e.kind == "manifest")
    assert lines[0].startswith("line 7: invalid JSON")
    assert lines[1].startswith("line 8: ") and '"image"' in lines[1]
    assert kinds(report.warnings) == {
        ("silent_audio", silent),
        ("missing_mask", root / entries[4]["image"]),
    }
    assert report.n_samples == 6  # the valid lines are still checked


def test_nonbinary_and_misplaced_masks_are_warnings(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    rng = np.random.default_rng(3)
    entries = [synth_entry(0, "test", "crack"), synth_entry(1, "test", "good")]
    entries[1]["mask"] = "masks/P0001.png"
    for entry in entries:
        entry["audio"] = None
        write(root / entry["image"], texture(rng))
    soft = cv2.GaussianBlur(blob_mask(rng), (0, 0), 2)  # anti-aliased edges: many grey levels
    write(root / entries[0]["mask"], soft)
    write(root / entries[1]["mask"], blob_mask(rng))
    write_manifest(root / "manifest.jsonl", entries)

    report = check_dataset(root, progress=False)
    assert report.ok
    assert kinds(report.warnings) == {
        ("nonbinary_mask", root / entries[0]["mask"]),
        ("mask_on_good", root / entries[1]["mask"]),
    }
    (nonbinary,) = [w for w in report.warnings if w.kind == "nonbinary_mask"]
    faint = int(np.count_nonzero((soft > 0) & (soft <= soft.max() / 2)))
    assert faint > 0 and f"{faint} fainter ones do not" in nonbinary.message


def test_files_with_an_exif_rotation_are_warnings(tmp_path: Path) -> None:
    """Read turned (as viewers show them), and said so: an image and a mask stored
    sideways, and a JPEG that is only mirrored."""
    from PIL import Image

    root = make_mvtec(tmp_path / "mvtec")
    rng = np.random.default_rng(9)

    def save(path: Path, array: np.ndarray, orientation: int) -> Path:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(array).save(path, exif=exif)
        return path

    sideways = save(root / "test/crack/000.png", texture(rng, size=SIZE)[:, :48], 6)
    mask = save(root / "ground_truth/crack/000_mask.png", blob_mask(rng)[:, :48], 6)
    mirrored = save(root / "test/scratch/000.jpg", texture(rng), 2)
    upright = save(root / "test/good/000.png", texture(rng), 1)  # the tag, but no turn

    report = check_dataset(root, progress=False)

    assert report.ok, report.errors  # image and mask turned alike: still aligned
    rotated = {w.path: w.message for w in report.warnings if w.kind == "rotated"}
    assert set(rotated) == {sideways, mask, mirrored}
    assert upright not in rotated
    assert "orientation 6" in rotated[sideways] and "rotated 90° clockwise" in rotated[sideways]
    assert "stored as 48x64 px" in rotated[sideways]
    assert "mirrored left-right" in rotated[mirrored]


def test_folder_without_any_mask_gets_one_note_not_errors(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "folder")
    shutil.rmtree(root / "masks")
    shutil.rmtree(root / "dent/masks")
    report = check_dataset(root, progress=False)
    assert report.ok
    assert kinds(report.warnings) == {("no_masks", root)}


def test_unknown_layout_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "junk/sub").mkdir(parents=True)
    report = check_dataset(tmp_path / "junk", progress=False)
    assert not report.ok
    assert report.layout is None
    assert [(e.kind, e.path) for e in report.errors] == [("dataset", tmp_path / "junk")]
    assert "unknown dataset layout" in report.errors[0].message


# --- Duplicates ---------------------------------------------------------------------------


def test_copies_across_splits_are_leakage(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    original = root / "train/good/000.png"
    byte_copy = root / "test/good/copy.png"
    shutil.copyfile(original, byte_copy)
    source = root / "train/good/001.png"
    reencoded = write(root / "test/good/reencoded.jpg", cv2.imread(str(source)))  # 3-ch JPEG
    assert cv2.imread(str(reencoded), cv2.IMREAD_GRAYSCALE).tobytes() != source.read_bytes()

    report = check_dataset(root, progress=False)

    groups = {frozenset(g.paths): g for g in report.duplicates}
    assert set(groups) == {frozenset({original, byte_copy}), frozenset({source, reencoded})}
    assert all(g.cross_split for g in groups.values())
    assert groups[frozenset({original, byte_copy})].identical
    assert not groups[frozenset({source, reencoded})].identical
    assert kinds(report.errors) == {("leakage", original), ("leakage", source)}
    assert not report.ok
    assert len(report.leaks) == 2


def test_copies_within_a_split_are_warnings_unless_labels_differ(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    same = root / "train/good/000.png"
    shutil.copyfile(same, root / "train/good/again.png")
    crack = root / "test/crack/000.png"
    write(root / "test/good/also_crack.png", cv2.imread(str(crack), cv2.IMREAD_GRAYSCALE))

    report = check_dataset(root, progress=False)

    assert kinds(report.warnings) == {("duplicate", same)}
    assert kinds(report.errors) == {("label_conflict", crack)}


def similar_parts(rng: np.random.Generator, n: int, size: int = 128) -> list[np.ndarray]:
    """``n`` parts of one product: a shared base texture, each part its own fine surface
    grain (±9 grey levels) and sensor noise (σ = 3). They look alike, yet none is a copy."""
    base = texture(rng, size, sigma=6).astype(np.float32)
    parts = []
    for _ in range(n):
        grain = texture(rng, size, sigma=1.5).astype(np.float32) - 130
        part = base + 0.1 * grain + rng.normal(0, 3, base.shape)
        parts.append(np.clip(part, 0, 255).astype(np.uint8))
    return parts


def test_similar_parts_of_one_product_are_not_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "similar"
    parts = similar_parts(np.random.default_rng(11), 40)
    for i, part in enumerate(parts):
        write(root / ("train" if i < 30 else "test") / "good" / f"{i:03d}.png", part)
    # ... but a JPEG re-encode (quality 75) of one of them among the lookalikes is a copy.
    reencoded = root / "test/good/reencoded.jpg"
    cv2.imwrite(str(reencoded), parts[3], [cv2.IMWRITE_JPEG_QUALITY, 75])

    report = check_dataset(root, progress=False)

    assert [g.paths for g in report.duplicates] == [(root / "train/good/003.png", reencoded)]
    assert kinds(report.errors) == {("leakage", root / "train/good/003.png")}
    assert report.warnings == ()


def test_similar_parts_are_hash_candidates() -> None:
    """The lookalikes above pass the hash stage: the thumbnail stage is what tells them apart."""
    infos = [image_info(part) for part in similar_parts(np.random.default_rng(11), 10)]
    hashes = np.array([info.phash for info in infos], dtype=np.uint64)
    i, _ = candidate_pairs(hashes, MAX_HASH_DISTANCE)
    assert len(i) == 45  # every pair


def test_candidate_pairs_match_brute_force_and_scale(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 600, dtype=np.uint64)
    hashes[300:320] = hashes[:20] ^ np.uint64(0b1011)  # 3 bits away
    i, j = candidate_pairs(hashes, 4)
    expected = {
        (a, b)
        for a in range(len(hashes))
        for b in range(a + 1, len(hashes))
        if bin(int(hashes[a]) ^ int(hashes[b])).count("1") <= 4
    }
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == expected
    assert len(expected) == 20

    # Scale, counted rather than timed (a loaded machine makes any time bound flaky): 50M
    # pairs are compared in a few vectorised blocks, each within the memory bound.
    from inspection.datasets import check

    blocks = []
    real_block = check._hash_block

    def counted(hashes, start, stop, max_distance):
        block = real_block(hashes, start, stop, max_distance)
        blocks.append(block.size)
        return block

    monkeypatch.setattr(check, "_hash_block", counted)
    many = rng.integers(0, 2**63, 10_000, dtype=np.uint64)
    candidate_pairs(many, MAX_HASH_DISTANCE)
    assert max(blocks) <= check._PAIR_BLOCK
    assert len(blocks) <= 2 * 10_000**2 // check._PAIR_BLOCK + 1  # not a loop over images


# --- Output -------------------------------------------------------------------------------


def test_report_json_and_printing(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mvtec")
    (root / "train/good/zero.png").write_bytes(b"")
    shutil.copyfile(root / "train/good/000.png", root / "test/good/copy.png")
    report = check_dataset(root, progress=False)
    assert isinstance(report, CheckReport)

    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is False
    assert data["counts"]["train"] == {"good": 5}
    assert {e["kind"] for e in data["errors"]} == {"unreadable_image", "leakage"}
    assert data["duplicates"][0]["cross_split"] is True

    out = io.StringIO()
    print_check_report(report, Console(file=out, width=160))
    text = out.getvalue()
    for expected in ("Images per split", "unreadable_image", "zero.png", "leakage", "2 error(s)"):
        assert expected in text


# --- Real data ----------------------------------------------------------------------------

MAGNETIC_TILE = magnetic_tile_dir()


@pytest.mark.skipif(
    not MAGNETIC_TILE.is_dir(),
    reason=f"shared magnetic-tile data not found at {MAGNETIC_TILE} "
    "(read-only data outside the repository; set INSPECTION_SHARED_DATA to its folder)",
)
def test_magnetic_tile_check() -> None:
    report = check_dataset(MAGNETIC_TILE, progress=False)
    assert report.counts["train"] == {"good": 666}
    assert report.images["count"] == 1344  # every file decodes
    assert not {e.kind for e in report.errors} - {"leakage", "label_conflict"}


def _manifest_with_height_maps(tmp_path: Path, maps) -> tuple[Path, Path, tuple[int, int]]:
    """A synthetic manifest whose parts name ``height/<name>`` in turn, each written by
    ``maps[name](h, w)`` (an array) unless it gives ``None``: (manifest, its folder, the
    images' (h, w))."""
    import cv2

    manifest = make_manifest(tmp_path / "synth")
    root = manifest.parent
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    h, w = cv2.imread(str(root / entries[0]["image"])).shape[:2]
    (root / "height").mkdir()
    for entry, (name, make) in zip(entries, maps.items(), strict=False):
        array = make(h, w)
        if array is not None:
            cv2.imwrite(str(root / "height" / name), array)
        entry["height"] = f"height/{name}"
    write_manifest(manifest, entries)
    return manifest, root, (h, w)


def _noise(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 0.005, (h, w)).astype(np.float32)


def test_height_maps_are_read_and_checked_against_their_images(tmp_path: Path) -> None:
    manifest, root, (h, w) = _manifest_with_height_maps(
        tmp_path,
        {
            "ok.tiff": _noise,
            "small.tiff": lambda h, w: _noise(h // 2, w),
            "grey.png": lambda h, w: np.zeros((h, w), np.uint8),
            "gone.tiff": lambda h, w: None,
        },
    )
    report = check_dataset(manifest, progress=False)

    assert kinds(report.errors) == {
        ("misaligned_height_map", root / "height/small.tiff"),
        ("unreadable_height_map", root / "height/grey.png"),
        ("missing_file", root / "height/gone.tiff"),
    }
    messages = {e.kind: e.message for e in report.errors}
    assert f"height map is {w}x{h // 2} px" in messages["misaligned_height_map"]
    assert "integer (uint8) height map needs" in messages["unreadable_height_map"]


def _blind(h: int, w: int) -> np.ndarray:
    height = _noise(h, w)
    height[: h * 3 // 4] = np.nan
    return height


def test_a_height_map_the_profiler_saw_little_of_is_a_warning(tmp_path: Path) -> None:
    manifest, root, _ = _manifest_with_height_maps(
        tmp_path, {"blind.tiff": _blind, "flat.tiff": lambda h, w: np.zeros((h, w), np.float32)}
    )
    report = check_dataset(manifest, progress=False)

    assert not report.errors
    found = {(k, p) for k, p in kinds(report.warnings) if "height" in k}
    assert found == {
        ("blind_height_map", root / "height/blind.tiff"),
        ("flat_height_map", root / "height/flat.tiff"),
    }
    messages = {e.kind: e.message for e in report.warnings}
    assert "saw nothing over 75% of it" in messages["blind_height_map"]
    assert "0 mm everywhere" in messages["flat_height_map"]


def test_integer_height_maps_are_read_through_the_datasets_encoding(tmp_path: Path) -> None:
    """A 3D camera's counts: read in mm through ``dataset.yaml``'s ``height_encoding``;
    without it each is unreadable, saying what is missing; a malformed one is the
    dataset's error."""
    counts = lambda h, w: np.full((h, w), 5000, np.uint16)  # noqa: E731
    manifest, root, _ = _manifest_with_height_maps(tmp_path, {"a.tiff": counts, "b.tiff": counts})
    unread = check_dataset(manifest, progress=False)
    assert {e.kind for e in unread.errors} == {"unreadable_height_map"}
    assert all("needs the profiler's z scale" in e.message for e in unread.errors)
    metadata = root / "dataset.yaml"
    stated = yaml.safe_load(metadata.read_text()) if metadata.is_file() else {}
    metadata.write_text(yaml.safe_dump({**stated, "height_encoding": {"scale_mm": 0.001}}))
    assert check_dataset(manifest, progress=False).errors == ()
    assert load_dataset(manifest).height_encoding.scale_mm == 0.001
    metadata.write_text(yaml.safe_dump({**stated, "height_encoding": {"scale_mm": 0}}))
    (issue,) = check_dataset(manifest, progress=False).errors
    assert issue.kind == "dataset" and "height_encoding: a height map's z scale" in issue.message
