"""Audit inputs: folders, globs, zips and manifests listed, and unsafe entries refused."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspection.audit import inputs
from inspection.audit.inputs import (
    AuditInputError,
    AuditItem,
    InputRefused,
    files_not_audited,
    input_kind,
    iter_inputs,
    read_bytes,
)


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 16, 3), value, np.uint8))
    return path


def _sources(spec) -> list[str]:
    return [item.source for item in iter_inputs(spec)]


def test_folder_is_walked_recursively_in_a_stable_order_skipping_other_files(tmp_path):
    _png(tmp_path / "b" / "2.png")
    _png(tmp_path / "b" / "1.PNG")
    _png(tmp_path / "a.jpg")
    _png(tmp_path / ".hidden" / "x.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert input_kind(tmp_path) == "folder"
    assert _sources(tmp_path) == ["a.jpg", "b/1.PNG", "b/2.png"]
    assert all(item.problem is None for item in iter_inputs(tmp_path))


def test_the_files_an_audit_passes_over_are_counted_by_suffix(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "lot").mkdir()
    for name in ("1.gif", "2.GIF", "notes.txt", "README"):
        (tmp_path / "lot" / name).write_bytes(b"x")
    (tmp_path / "dataset.yaml").write_text("mm_per_px: 0.1\n")  # read by the audit
    (tmp_path / ".cache").write_text("hidden")  # hidden names are not inputs
    assert files_not_audited(tmp_path) == {".gif": 2, ".txt": 1, "(no suffix)": 1}
    archive = tmp_path.parent / "lot.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/part.jpg", b"x")
        zf.writestr("ok/part.heic", b"x")
    assert files_not_audited(archive) == {".heic": 1}
    assert files_not_audited(f"{tmp_path}/**/*.gif") == {}  # a glob names its own files


def test_a_glob_names_its_matches_relative_to_the_folder_before_the_wildcard(tmp_path):
    _png(tmp_path / "lot" / "x" / "1.png")
    _png(tmp_path / "lot" / "y" / "2.png")
    _png(tmp_path / "lot" / "y" / "3.jpg")
    pattern = f"{tmp_path}/lot/**/*.png"
    assert input_kind(pattern) == "glob"
    assert sorted(_sources(pattern)) == ["x/1.png", "y/2.png"]


def test_symlinks_out_of_the_input_are_refused_and_inside_ones_read(tmp_path):
    outside = _png(tmp_path / "elsewhere" / "secret.png")
    root = tmp_path / "lot"
    inside = _png(root / "real.png")
    os.symlink(outside, root / "escape.png")
    os.symlink(inside, root / "alias.png")
    items = {item.source: item for item in iter_inputs(root)}
    assert "outside the input" in items["escape.png"].problem
    assert items["alias.png"].problem is None and items["real.png"].problem is None


def test_unsafe_zip_entries_are_refused_with_the_reason(tmp_path):
    archive = tmp_path / "lot.zip"
    png = cv2.imencode(".png", np.zeros((16, 16), np.uint8))[1].tobytes()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok/part.png", png)
        zf.writestr("../../etc/evil.png", png)
        zf.writestr("/abs/evil.png", png)
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("bomb.bmp", b"\0" * (17 << 20))  # 17 MiB of zeros: ratio ~1000:1
        zf.writestr("readme.txt", "skipped")
    assert input_kind(archive) == "zip"
    items = {item.source: item for item in iter_inputs(archive)}
    assert set(items) == {
        "ok/part.png",
        "../../etc/evil.png",
        "/abs/evil.png",
        "link.png",
        "bomb.bmp",
    }
    assert items["ok/part.png"].problem is None
    assert read_bytes(items["ok/part.png"]) == png
    assert "'..'" in items["../../etc/evil.png"].problem
    assert "absolute path" in items["/abs/evil.png"].problem
    assert "symbolic link" in items["link.png"].problem
    assert "decompression bomb" in items["bomb.bmp"].problem


def test_a_zip_entry_that_inflates_past_its_header_is_stopped_while_read(tmp_path, monkeypatch):
    archive = tmp_path / "lot.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.png", b"\0" * (3 << 20))
    monkeypatch.setattr(inputs, "MAX_ENTRY_BYTES", 1 << 20)  # the cap, counted as it inflates
    item = AuditItem("big.png", str(archive), entry="big.png")
    with pytest.raises(InputRefused, match="decompression bomb"):
        read_bytes(item)


def test_manifest_lines_are_items_and_a_malformed_line_is_listed(tmp_path):
    _png(tmp_path / "img" / "a.png")
    lines = [
        {"image": "img/a.png", "part_id": "P-1", "mm_per_px": 0.2, "reference_rgb": [1, 2, 3]},
        "not json",
        {"label": "no image"},
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    assert input_kind(tmp_path) == "manifest" == input_kind(manifest)
    items = list(iter_inputs(manifest))
    good = [i for i in items if i.problem is None]
    bad = [i for i in items if i.problem is not None]
    assert [(i.source, i.part_id, i.mm_per_px, i.reference_rgb) for i in good] == [
        ("img/a.png", "P-1", 0.2, [1, 2, 3])
    ]
    assert sorted(i.source for i in bad) == ["manifest.jsonl:2", "manifest.jsonl:3"]


def test_inputs_that_cannot_be_listed_are_refused_at_the_door(tmp_path):
    with pytest.raises(AuditInputError, match="no such file"):
        input_kind(tmp_path / "missing")
    other = tmp_path / "a.txt"
    other.write_text("x")
    with pytest.raises(AuditInputError, match="not an audit input"):
        input_kind(other)


@pytest.mark.parametrize(
    ("suffix", "height"),
    [
        (".height.tiff", np.zeros((16, 16), np.float32)),
        (".height.png", np.full((16, 16), 900, np.uint16)),  # a 3D camera's depth counts
    ],
)
def test_a_height_map_beside_an_image_is_its_profilers_not_a_part(tmp_path, suffix, height):
    """``<stem>.height.tiff`` (or ``.height.png``) beside an image in a folder or a glob
    is that image's height map (as at a station's watched folder); in a zip it is passed
    over, and counted so, since the audit reads height maps from files."""
    _png(tmp_path / "lot" / "a.png")
    _png(tmp_path / "lot" / "b.png")
    cv2.imwrite(str(tmp_path / "lot" / f"a{suffix}"), height)
    for spec in (tmp_path / "lot", f"{tmp_path}/lot/*"):
        items = {item.source: item for item in iter_inputs(spec)}
        assert sorted(items) == ["a.png", "b.png"]
        assert items["a.png"].height_map == str(tmp_path / "lot" / f"a{suffix}")
        assert items["b.png"].height_map is None
    assert files_not_audited(tmp_path / "lot") == {}
    archive = tmp_path / "lot.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "lot" / "a.png", "a.png")
        zf.write(tmp_path / "lot" / f"a{suffix}", f"a{suffix}")
    assert [item.source for item in iter_inputs(archive)] == ["a.png"]
    assert files_not_audited(archive) == {suffix: 1}


def test_a_folders_dataset_yaml_states_how_its_integer_height_maps_read(tmp_path):
    """Its ``height_encoding`` comes with every part (the audit reads the counts in mm
    through it, unless ``--height-scale`` is given); a malformed one refuses the input."""
    _png(tmp_path / "lot" / "a.png")
    encoding = {"scale_mm": 0.001, "offset_mm": 2.0, "invalid": 0}
    (tmp_path / "lot" / "dataset.yaml").write_text(yaml.safe_dump({"height_encoding": encoding}))
    (item,) = iter_inputs(tmp_path / "lot")
    assert item.height_encoding == encoding
    assert AuditItem.from_json(item.to_json()) == item  # as a resumed audit reads it back
    (tmp_path / "lot" / "dataset.yaml").write_text("height_encoding: {scale_mm: 0.001, z: 1}\n")
    with pytest.raises(AuditInputError, match="height_encoding: a height encoding is a mapping"):
        list(iter_inputs(tmp_path / "lot"))
