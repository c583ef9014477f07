"""Ed25519 keys that sign and verify edge bundles (``cryptography``; no torch).

The plant keeps the private key where bundles are exported; each edge box holds the
public key and refuses a bundle whose ``manifest.json`` is unsigned or signed by another
key. The manifest lists the SHA-256 of every file, so its signature covers them all.

>>> fp = new_keypair(Path("keys/edge.key"), Path("keys/edge.pub"))  # doctest: +SKIP
>>> sig = sign_file(Path("bundle/manifest.json"), Path("keys/edge.key"))  # doctest: +SKIP
>>> verify_file(Path("bundle/manifest.json"), sig, Path("keys/edge.pub")) == fp  # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from inspection.errors import UserError

SIGNATURE_SUFFIX = ".sig"
FINGERPRINT_CHARS = 16
_NO_CRYPTOGRAPHY = "signing needs the `cryptography` package (pip install 'inspection[edge]')"


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # the `edge` extra is not installed
        raise UserError(_NO_CRYPTOGRAPHY) from exc
    return InvalidSignature, serialization, ed25519


def _bundle_error(message: str) -> Exception:
    from inspection.edge.bundle import BundleError  # bundle imports this module

    return BundleError(message)


def new_keypair(private_path: Path, public_path: Path) -> str:
    """Write a new Ed25519 key pair as PEM files.

    The private key file is created with mode 0600 (never readable by others, not even
    for an instant) and neither file overwrites an existing one.

    Parameters
    ----------
    private_path, public_path : Path
        Where the private (PKCS8) and public (SubjectPublicKeyInfo) keys go.

    Returns
    -------
    str
        The public key's fingerprint (:func:`fingerprint`).

    Raises
    ------
    UserError
        A key file that already exists.
    """
    _, serialization, ed25519 = _crypto()
    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise UserError(f"{path}: already exists; a key is never overwritten")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return _fingerprint_of(key.public_key())


def _load_private(path: Path):
    _, serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise UserError(f"{path}: no such private key file") from None
    except (ValueError, TypeError) as exc:  # not PEM, encrypted, or unsupported
        raise UserError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UserError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def _load_public(path: Path):
    _, serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise UserError(f"{path}: no such public key file") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise UserError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
    return key


def _fingerprint_of(public_key) -> str:
    _, serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:FINGERPRINT_CHARS]


def fingerprint(public_key: Path) -> str:
    """The first 16 hex digits of the SHA-256 of the raw 32-byte public key.

    Raises
    ------
    UserError
        A missing file, or one that is not an Ed25519 public key in PEM.
    """
    return _fingerprint_of(_load_public(public_key))


def sign_file(path: Path, private_key: Path) -> Path:
    """Sign ``path``'s exact bytes; the raw 64-byte signature goes to ``path.with_suffix(".sig")``.

    Returns
    -------
    Path
        The signature file.
    """
    path = Path(path)
    signature = _load_private(private_key).sign(path.read_bytes())
    out = path.with_suffix(SIGNATURE_SUFFIX)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_bytes(signature)
    partial.replace(out)
    return out


def verify_file(path: Path, signature: Path, public_key: Path) -> str:
    """Check that ``signature`` was made over ``path``'s exact bytes by ``public_key``.

    Returns
    -------
    str
        The public key's fingerprint.

    Raises
    ------
    BundleError
        A missing signature, or one that does not verify (another key, or a file changed
        after signing), naming the files.
    UserError
        A public key file that is missing or not an Ed25519 key.
    """
    invalid, _, _ = _crypto()
    key = _load_public(public_key)
    path, signature = Path(path), Path(signature)
    if not signature.is_file():
        raise _bundle_error(f"{signature}: missing; the bundle is not signed")
    try:
        key.verify(signature.read_bytes(), path.read_bytes())
    except invalid:
        raise _bundle_error(
            f"{signature}: the signature does not verify over {path.name} with the key "
            f"{_fingerprint_of(key)} ({public_key}): signed by another key, or "
            f"{path.name} was changed after signing"
        ) from None
    return _fingerprint_of(key)
