"""Install, self-test and roll back bundles in an edge box's home folder. Torch-free.

The home folder (``--home``, env ``INSPECTION_EDGE_HOME``, default
``~/.local/share/inspection/edge``)::

    home/
      trusted.pub            optional: the public key every bundle must be signed with
      bundles/<version>/     each installed bundle, as exported (verified on install)
      current -> bundles/<version>     the bundle the edge runs
      previous -> bundles/<version>    the one before it (``rollback`` swaps them)

:func:`install_bundle` copies a bundle in, verifies the copy (every file's SHA-256, the
signature where a key is configured), runs its self-test (the held-out parts it carries
must get the verdicts the torch model gave, and scores within tolerance) and only then
switches ``current`` to it, atomically (a new symlink renamed over the old one with
``os.replace``: a reader sees the old bundle or the new one, never neither). A bundle
that fails verification or its self-test is not activated: ``current`` stays, and the
error says why.

>>> install_bundle("out/bundle", home="/var/lib/inspection/edge")  # doctest: +SKIP
>>> rollback("/var/lib/inspection/edge")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspection.edge.bundle import Bundle, BundleError, load_bundle
from inspection.errors import UserError
from inspection.models.backbones import provenance_words

HOME_ENV = "INSPECTION_EDGE_HOME"
DEFAULT_HOME = Path("~/.local/share/inspection/edge")
TRUSTED_KEY = "trusted.pub"


class InstallError(UserError):
    """A bundle that was not installed or activated, or a home folder in a bad state."""


@dataclass(frozen=True)
class SelfTestReport:
    """What a bundle's self-test found.

    Attributes
    ----------
    parts : int
        Held-out parts run.
    failures : tuple[str, ...]
        One line per part whose verdict differs or whose score is out of tolerance.
    max_score_diff : float
        The largest score difference seen.
    """

    parts: int
    failures: tuple[str, ...] = ()
    max_score_diff: float = 0.0

    @property
    def passed(self) -> bool:
        return self.parts > 0 and not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "parts": self.parts,
            "failures": list(self.failures),
            "max_score_diff": self.max_score_diff,
        }


@dataclass(frozen=True)
class EdgeStatus:
    """An edge home's state: what runs, what a rollback would run, what is installed."""

    home: Path
    current: str | None
    previous: str | None
    installed: tuple[str, ...] = ()
    trusted_key: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "current": self.current,
            "previous": self.previous,
            "installed": list(self.installed),
            "trusted_key": str(self.trusted_key) if self.trusted_key else None,
            **self.details,
        }


def edge_home(home: str | Path | None = None) -> Path:
    """The edge home folder: ``home``, else ``$INSPECTION_EDGE_HOME``, else the default."""
    chosen = home or os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser()


def trusted_key(
    home: str | Path | None = None, public_key: str | Path | None = None
) -> Path | None:
    """The public key bundles are verified with: ``public_key`` if given, else the
    home's ``trusted.pub`` if present, else ``None`` (unsigned bundles are accepted).

    Raises
    ------
    InstallError
        A ``public_key`` that is not a file.
    """
    if public_key is not None:
        key = Path(public_key).expanduser()
        if not key.is_file():
            raise InstallError(f"{key}: no such public key file")
        return key
    key = edge_home(home) / TRUSTED_KEY
    return key if key.is_file() else None


# ------------------------------------------------------------------------------ self-test


def _expected_verdict(case: Any, runtime: Any) -> str:
    """The verdict recorded at export, under the plant's review band if it has one."""
    from inspection.pipeline import in_review_band

    thresholds = getattr(runtime, "thresholds", None)
    part = case.scores.get("part")
    banded = thresholds is not None and part is not None and in_review_band(part, thresholds)
    return "REVIEW" if case.verdict == "PASS" and banded else case.verdict


def run_selftest(runtime: Any, tolerance: float | None = None) -> SelfTestReport:
    """Run the bundle's held-out parts (``selftest/``) through ``runtime`` (an
    :class:`~inspection.edge.runtime.EdgeRuntime`) and compare with what was recorded
    at export (a recorded PASS whose score falls in the runtime's review band, set by
    the plant, is expected as REVIEW).

    Every verdict must match, and every recorded score be within ``tolerance``
    (default: the one recorded with the parts). A part that cannot be read, or whose
    decision raises, is a failure; a bundle with no self-test fails it (nothing shows
    that it decides as exported).
    """
    try:
        cases = runtime.bundle.selftest()
    except BundleError as exc:
        return SelfTestReport(parts=0, failures=(str(exc),))
    if not cases:
        return SelfTestReport(parts=0, failures=("the bundle carries no self-test",))
    failures: list[str] = []
    worst = 0.0
    for case in cases:
        tol = tolerance if tolerance is not None else case.tolerance
        try:
            result, _ = runtime.inspect(case.observation())
        except Exception as exc:  # a self-test that cannot run has failed
            failures.append(f"{case.part_id}: {type(exc).__name__}: {exc}")
            continue
        expected = _expected_verdict(case, runtime)
        if result.verdict.value != expected:
            why = "; ".join(result.reasons) or "no reason given"
            failures.append(
                f"{case.part_id}: verdict {result.verdict.value}, expected {expected} ({why})"
            )
        for key, expected in case.scores.items():
            got = result.scores.get(key)
            diff = math.inf if got is None else abs(float(got) - expected)
            worst = max(worst, diff)
            if not diff <= tol:  # NaN fails too
                failures.append(
                    f"{case.part_id}: score {key} {got} vs expected {expected} (tolerance {tol:g})"
                )
    return SelfTestReport(parts=len(cases), failures=tuple(failures), max_score_diff=worst)


def check_bundle(
    bundle: Bundle, threads: int | None = None, tolerance: float | None = None
) -> tuple[Any, SelfTestReport]:
    """An :class:`~inspection.edge.runtime.EdgeRuntime` of ``bundle`` and its self-test."""
    from inspection.edge.runtime import EdgeRuntime

    products = sorted(bundle.product_standards) or [None]
    runtime = EdgeRuntime(bundle, product=products[0], threads=threads)
    return runtime, run_selftest(runtime, tolerance)


# ------------------------------------------------------------------------- install, rollback


def install_bundle(
    src: str | Path,
    home: str | Path | None = None,
    public_key: str | Path | None = None,
    threads: int | None = None,
) -> Bundle:
    """Install the bundle in ``src`` and make it the current one.

    The bundle is verified where it is, copied under ``home/bundles/<version>/``,
    verified again there (what was copied is what runs), self-tested, and only then
    activated; the bundle it replaces becomes ``previous``.

    Parameters
    ----------
    src : str | Path
        An exported bundle folder.
    home : str | Path | None
        The edge home (see :func:`edge_home`).
    public_key : str | Path | None
        The key the bundle must be signed with; default the home's ``trusted.pub``
        where there is one.
    threads : int | None
        ONNX Runtime threads for the self-test.

    Returns
    -------
    Bundle
        The installed bundle, as loaded from the home.

    Raises
    ------
    BundleError
        A bundle that fails verification (tampered, unsigned with a key configured).
    InstallError
        A bundle that fails its self-test (named parts and why); ``current`` stays.
    """
    home = edge_home(home)
    key = trusted_key(home, public_key)
    load_bundle(src, public_key=key)  # refuse a bad bundle before copying anything
    bundles = home / "bundles"
    bundles.mkdir(parents=True, exist_ok=True)
    with _locked(home):
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=bundles))
        try:
            copy = staging / "bundle"
            shutil.copytree(src, copy, symlinks=False)
            bundle = load_bundle(copy, public_key=key)
            _, report = check_bundle(bundle, threads=threads)
            if not report.passed:
                raise InstallError(
                    f"{src}: bundle {bundle.version} failed its self-test and was not "
                    f"activated ({len(report.failures)} of {report.parts} parts): "
                    + "; ".join(report.failures[:5])
                )
            target = bundles / bundle.version
            if target.exists() and not _verifies(target, key):
                os.replace(target, staging / "damaged")  # a damaged copy of the same version
            if target.exists():  # the same bundle again, intact: keep the installed copy
                shutil.rmtree(copy)
            else:
                os.replace(copy, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _activate(home, target)
    return load_bundle(target, public_key=key)


def rollback(home: str | Path | None = None, public_key: str | Path | None = None) -> Bundle:
    """Make the previous bundle current again (and the current one previous).

    The previous bundle is verified first; a rollback to a bundle that no longer
    verifies is refused and nothing changes.

    Raises
    ------
    InstallError
        No previous bundle to go back to.
    BundleError
        The previous bundle no longer verifies.
    """
    home = edge_home(home)
    if not home.is_dir():  # a mistyped --home: say so, and leave no empty home behind
        raise InstallError(f"{home}: no such edge home (nothing was installed there)")
    key = trusted_key(home, public_key)
    with _locked(home):
        previous = _target(home / "previous")
        if previous is None:
            raise InstallError(f"{home}: no previous bundle to roll back to")
        bundle = load_bundle(previous, public_key=key)
        _activate(home, previous)
    return bundle


def current_bundle(home: str | Path | None = None, public_key: str | Path | None = None) -> Bundle:
    """The home's current bundle, verified.

    Raises
    ------
    InstallError
        No bundle installed.
    """
    home = edge_home(home)
    current = _target(home / "current")
    if current is None:
        raise InstallError(f"{home}: no bundle installed (inspection edge install BUNDLE)")
    return load_bundle(current, public_key=trusted_key(home, public_key))


def status(home: str | Path | None = None) -> EdgeStatus:
    """What the home runs, what a rollback would run, and what is installed."""
    home = edge_home(home)
    bundles = home / "bundles"
    installed = (
        tuple(
            sorted(p.name for p in bundles.iterdir() if p.is_dir() and not p.name.startswith("."))
        )
        if bundles.is_dir()
        else ()
    )
    details: dict[str, Any] = {}
    current = _target(home / "current")
    if current is not None:
        try:
            bundle = load_bundle(current, public_key=trusted_key(home))
            details = {
                "model_version": bundle.model_version,
                "calibration_version": bundle.calibration_version,
                "split": bundle.split,
                "products": sorted(bundle.product_standards),
                "signed_by": bundle.signed_by,
                "verified": True,
            }
            normality = bundle.manifest.get("normality") or {}
            if weights := provenance_words(normality.get("backbone"), brief=True):
                details["pretrained_weights"] = weights  # in its normality graph
        except UserError as exc:
            details = {"verified": False, "error": str(exc)}
    previous = _target(home / "previous")
    return EdgeStatus(
        home=home,
        current=current.name if current else None,
        previous=previous.name if previous else None,
        installed=installed,
        trusted_key=trusted_key(home),
        details=details,
    )


def _verifies(folder: Path, key: Path | None) -> bool:
    try:
        load_bundle(folder, public_key=key)
    except BundleError:
        return False
    return True


def _activate(home: Path, target: Path) -> None:
    """Point ``current`` at ``target``, the old current becoming ``previous``.

    ``previous`` is set first: a crash between the two leaves ``current`` as it was and
    ``previous`` pointing at it, both valid.
    """
    old = _target(home / "current")
    if old is not None and old.resolve() == target.resolve():
        return
    if old is not None:
        _point(home / "previous", old)
    _point(home / "current", target)


def _point(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target`` atomically (relative, so the home can move)."""
    tmp = link.with_name(f".{link.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)


def _target(link: Path) -> Path | None:
    """The bundle folder ``link`` points at, or ``None`` (no link, or a dangling one)."""
    if not link.is_symlink():
        return None
    target = link.parent / os.readlink(link)
    return target if target.is_dir() else None


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One install or rollback at a time in a home (two would race on the links)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
