"""The standards library of the console: versions, diffs and what each product uses.

Engineers view, upload and edit defect standards (YAML) in the console. Every saved text is
kept whole as the next version of the standard its YAML names (``id:``), so that any two
versions can be compared and any one activated again. A product is inspected with one
activated version and reported with one decoder adapter (``None``: the base decoder);
both live in the records database, and every change is written to its activity log.

Torch-free and gradio-free: the console's handlers call it, and so can a script.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inspection.errors import UserError
from inspection.records.db import writer
from inspection.records.models import ActivityEvent, ProductSetting, StandardVersion
from inspection.standards.loader import Problem, StandardError, parse_standard
from inspection.standards.schema import Standard

log = logging.getLogger(__name__)

# Column widths of the records schema (models.py): refused up front, since SQLite would
# store a longer value silently and PostgreSQL would fail mid-transaction.
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 128
MAX_ADAPTER_CHARS = 64

SAVE, ACTIVATE, SET_ADAPTER = "standard.save", "standard.activate", "adapter.set"
"""Actions the library writes to the activity log."""


@dataclass(frozen=True)
class StandardVersionInfo:
    """One stored version of a standard."""

    standard_id: str
    version: int
    declared_version: str | None  # the ``revision:`` its YAML declares
    sha256: str
    author: str
    note: str | None
    created_at: datetime
    text: str

    @property
    def label(self) -> str:
        """``"<standard id> v<version>"``, as diffs and the console show it."""
        return f"{self.standard_id} v{self.version}"


@dataclass(frozen=True)
class ProductSettingInfo:
    """What a product is inspected and reported with."""

    product: str
    standard_id: str | None
    standard_version: int | None
    adapter: str | None  # None: the base decoder
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class ActivityInfo:
    """One change made from the console."""

    id: int
    actor: str
    action: str
    target: str | None
    detail: Mapping[str, Any]
    created_at: datetime


def text_sha256(text: str) -> str:
    """SHA-256 of a standard's text (UTF-8): identical uploads are stored once."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def _name(value: str | None, what: str, limit: int = MAX_NAME_CHARS) -> str:
    """``value`` stripped; :class:`UserError` when empty or longer than the column."""
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{what} must be a non-empty name")
    value = value.strip()
    if len(value) > limit:
        raise UserError(f"{what} {value[:32]!r}... is longer than {limit} characters")
    return value


T = TypeVar("T")


def _info(kind: type[T], row: Any) -> T:
    """A frozen copy of an ORM row as ``kind``, whose fields are the row's columns."""
    values = {f.name: getattr(row, f.name) for f in fields(kind)}  # type: ignore[arg-type]
    if "detail" in values:
        values["detail"] = dict(values["detail"] or {})
    return kind(**values)


def _next_version(session: Session, standard_id: str) -> int:
    """One more than the newest stored version (1 for a new standard)."""
    newest = session.scalar(
        select(func.max(StandardVersion.version)).where(StandardVersion.standard_id == standard_id)
    )
    return (newest or 0) + 1


class StandardLibrary:
    """Versions of defect standards and the version and adapter each product uses.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The records database, schema at head (:func:`inspection.records.db.open_records`).
    clock : Callable[[], float]
        Wall clock in seconds (injected by tests); every stored time comes from it, as
        timezone-aware UTC.

    Examples
    --------
    >>> library = StandardLibrary(open_records("sqlite:///records.db"))  # doctest: +SKIP
    >>> library.seed(get_settings().standards_dir)  # doctest: +SKIP
    3
    >>> library.activate("tile", "QS-TIL-120", 2, actor="ana")  # doctest: +SKIP
    """

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time):
        self.engine = engine
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _log(
        self, session: Session, actor: str, action: str, target: str, detail: dict[str, Any]
    ) -> None:
        session.add(
            ActivityEvent(
                actor=actor, action=action, target=target, detail=detail, created_at=self._now()
            )
        )

    # ------------------------------------------------------------------ versions

    def check(self, text: str, source: str = "upload") -> list[Problem]:
        """Every problem of a standard's text, each with its line; ``[]`` when valid.

        Bad text (YAML syntax, schema, unknown references, too large) never raises here.
        """
        return list(self._parse(text, source)[1])

    def _parse(self, text: str, source: str) -> tuple[Standard | None, tuple[Problem, ...]]:
        if not isinstance(text, str):
            return None, (Problem(source, None, "", "a standard is YAML text"),)
        try:
            standard = parse_standard(text, source=source)
        except StandardError as error:
            return None, error.problems
        if len(standard.id) > MAX_ID_CHARS:
            # The id is the key of its versions in the database.
            line = next((i for i, s in enumerate(text.splitlines(), 1) if s.startswith("id:")), 1)
            message = f"longer than {MAX_ID_CHARS} characters"
            return None, (Problem(source, line, "id", message),)
        return standard, ()

    def save(self, text: str, author: str, note: str | None = None) -> StandardVersionInfo:
        """Store ``text`` as the next version of the standard its YAML names.

        Text identical to that standard's newest version stores nothing and returns the
        newest version; text identical to an older one is stored again (a revert is a
        change worth a version).

        Raises
        ------
        StandardError
            With every problem (line numbers included) when the text is not a valid
            standard; nothing is stored.
        UserError
            When ``author`` is empty.
        """
        author = _name(author, "author")
        standard, problems = self._parse(text, "upload")
        if standard is None:
            raise StandardError(problems)
        try:
            return self._store(standard, text, author, note)
        except IntegrityError:
            # Another writer took the same version number between our read and our insert
            # (PostgreSQL; SQLite's write lock serialises them): number it again.
            return self._store(standard, text, author, note)

    def _store(
        self, standard: Standard, text: str, author: str, note: str | None
    ) -> StandardVersionInfo:
        sha = text_sha256(text)
        with Session(writer(self.engine)) as session, session.begin():
            newest = session.scalars(
                select(StandardVersion)
                .where(StandardVersion.standard_id == standard.id)
                .order_by(StandardVersion.version.desc())
                .limit(1)
            ).first()
            if newest is not None and newest.sha256 == sha:
                return _info(StandardVersionInfo, newest)
            row = StandardVersion(
                standard_id=standard.id,
                version=_next_version(session, standard.id),
                declared_version=standard.revision,
                text=text,
                sha256=sha,
                author=author,
                note=note,
                created_at=self._now(),
            )
            session.add(row)
            session.flush()  # the unique (standard_id, version) is checked here
            detail = {"version": row.version, "sha256": sha, "revision": standard.revision}
            if note:
                detail["note"] = note
            self._log(session, author, SAVE, f"{standard.id} v{row.version}", detail)
            return _info(StandardVersionInfo, row)

    def standards(self) -> list[str]:
        """Ids of the stored standards, sorted."""
        with Session(self.engine) as session:
            stmt = select(StandardVersion.standard_id).distinct()
            return sorted(session.scalars(stmt))

    def versions(self, standard_id: str) -> list[StandardVersionInfo]:
        """Every stored version of a standard, newest first (``[]`` when none)."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(StandardVersion)
                .where(StandardVersion.standard_id == standard_id)
                .order_by(StandardVersion.version.desc())
            )
            return [_info(StandardVersionInfo, row) for row in rows]

    def get(self, standard_id: str, version: int | None = None) -> StandardVersionInfo:
        """One version of a standard (``None``: the newest).

        Raises
        ------
        UserError
            When the standard or that version is not stored.
        """
        stmt = select(StandardVersion).where(StandardVersion.standard_id == standard_id)
        if version is None:
            stmt = stmt.order_by(StandardVersion.version.desc()).limit(1)
        else:
            stmt = stmt.where(StandardVersion.version == version)
        with Session(self.engine) as session:
            row = session.scalars(stmt).first()
            if row is not None:
                return _info(StandardVersionInfo, row)
        stored = [info.version for info in self.versions(standard_id)]
        if not stored:
            known = ", ".join(self.standards()) or "none"
            raise UserError(f"no standard {standard_id!r} is stored (stored: {known})")
        raise UserError(
            f"standard {standard_id!r} has no version {version} "
            f"(versions: {', '.join(map(str, sorted(stored)))})"
        )

    def text(self, standard_id: str, version: int | None = None) -> str:
        """The YAML text of one version (``None``: the newest); see :meth:`get`."""
        return self.get(standard_id, version).text

    def diff(self, standard_id: str, old: int, new: int) -> str:
        """A unified diff from version ``old`` to ``new``, labelled ``"<id> v<n>"``.

        Empty when the two texts are the same. Raises :class:`UserError` for a version
        that is not stored.
        """
        before, after = self.get(standard_id, old), self.get(standard_id, new)
        lines = difflib.unified_diff(
            before.text.splitlines(),
            after.text.splitlines(),
            fromfile=before.label,
            tofile=after.label,
            lineterm="",
        )
        return "\n".join(lines)

    # ------------------------------------------------------------------ products

    def activate(
        self, product: str, standard_id: str, version: int, actor: str
    ) -> ProductSettingInfo:
        """Inspect ``product`` with this version of a standard from now on.

        Raises
        ------
        UserError
            When the version is not stored, or the product or actor is empty.
        """
        product, actor = _name(product, "product"), _name(actor, "actor")
        info = self.get(standard_id, version)  # refuses an unknown version
        changes = {"standard_id": info.standard_id, "standard_version": info.version}
        return self._upsert(product, actor, ACTIVATE, changes)

    def set_adapter(
        self, product: str, adapter: str | None, actor: str, known: Sequence[str]
    ) -> ProductSettingInfo:
        """Report ``product`` with this decoder adapter (``None``: the base decoder).

        Raises
        ------
        UserError
            When ``adapter`` is not one of ``known``, or the product or actor is empty.
        """
        product, actor = _name(product, "product"), _name(actor, "actor")
        if adapter is not None and adapter not in known:
            names = ", ".join(sorted(known)) or "none installed"
            raise UserError(f"unknown adapter {adapter!r} (known: {names})")
        if adapter is not None:
            adapter = _name(adapter, "adapter", MAX_ADAPTER_CHARS)
        return self._upsert(product, actor, SET_ADAPTER, {"adapter": adapter})

    def _upsert(
        self, product: str, actor: str, action: str, changes: dict[str, Any]
    ) -> ProductSettingInfo:
        try:
            return self._write_setting(product, actor, action, changes)
        except IntegrityError:
            # Another writer created this product's row first (unique product): update it.
            return self._write_setting(product, actor, action, changes)

    def _write_setting(
        self, product: str, actor: str, action: str, changes: dict[str, Any]
    ) -> ProductSettingInfo:
        with Session(writer(self.engine)) as session, session.begin():
            row = session.scalars(
                select(ProductSetting).where(ProductSetting.product == product)
            ).first()
            if row is None:
                row = ProductSetting(product=product)
                session.add(row)
            before = {key: getattr(row, key) for key in changes}
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_by, row.updated_at = actor, self._now()
            session.flush()
            self._log(session, actor, action, product, {**changes, "previous": before})
            return _info(ProductSettingInfo, row)

    def product_settings(self) -> list[ProductSettingInfo]:
        """Every product's setting, by product name."""
        with Session(self.engine) as session:
            rows = session.scalars(select(ProductSetting).order_by(ProductSetting.product))
            return [_info(ProductSettingInfo, row) for row in rows]

    def setting(self, product: str) -> ProductSettingInfo | None:
        """A product's setting; ``None`` when nothing was set for it."""
        with Session(self.engine) as session:
            row = session.scalars(
                select(ProductSetting).where(ProductSetting.product == product)
            ).first()
            return None if row is None else _info(ProductSettingInfo, row)

    def active_standard(self, product: str) -> tuple[StandardVersionInfo, Standard]:
        """The version a product is inspected with, and that version parsed.

        Raises
        ------
        UserError
            When no version is active for ``product``.
        """
        setting = self.setting(product)
        if setting is None or setting.standard_id is None or setting.standard_version is None:
            raise UserError(f"no standard is active for product {product!r}")
        info = self.get(setting.standard_id, setting.standard_version)
        return info, parse_standard(info.text, source=info.label)

    # ------------------------------------------------------------------ seeding

    def seed(self, directory: str | Path, actor: str = "system") -> int:
        """Import the ``*.yaml`` standards of a folder, and activate each for its product.

        A file whose text is already stored as a version of its standard is not stored
        again. Its version is activated for the product named by the file's stem
        (``tile.yaml``: ``tile``) when that product has no active standard yet, so that a
        console started on a fresh database inspects with the shipped standards and a
        restart never undoes an engineer's activation. A file that is not a valid
        standard is skipped with a warning: one bad file must not keep the console down.

        Returns
        -------
        int
            How many versions were stored.

        Raises
        ------
        UserError
            When ``directory`` is not a folder.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise UserError(f"standards folder {directory} does not exist")
        stored = 0
        for path in sorted(directory.glob("*.yaml")):
            info, new = self._seed_file(path, actor)
            if info is None:
                continue
            stored += new
            setting = self.setting(path.stem)
            if setting is None or setting.standard_id is None:
                self.activate(path.stem, info.standard_id, info.version, actor)
        return stored

    def _seed_file(self, path: Path, actor: str) -> tuple[StandardVersionInfo | None, bool]:
        """The stored version holding ``path``'s text, and whether it was stored now."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            log.warning("standard %s not imported: cannot read: %s", path, error)
            return None, False
        standard, problems = self._parse(text, str(path))
        if standard is None:
            log.warning("standard %s not imported:\n%s", path, "\n".join(map(str, problems)))
            return None, False
        sha = text_sha256(text)
        existing = next((v for v in self.versions(standard.id) if v.sha256 == sha), None)
        if existing is not None:
            return existing, False
        return self.save(text, actor, note=f"imported from {path.name}"), True

    # ------------------------------------------------------------------ activity

    def activity(self, limit: int = 50) -> list[ActivityInfo]:
        """The ``limit`` latest changes made from the console, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise UserError(f"activity limit must be a positive whole number, not {limit!r}")
        with Session(self.engine) as session:
            rows = session.scalars(
                select(ActivityEvent)
                .order_by(ActivityEvent.created_at.desc(), ActivityEvent.id.desc())
                .limit(limit)
            )
            return [_info(ActivityInfo, row) for row in rows]
