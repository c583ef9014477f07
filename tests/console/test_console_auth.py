"""Console logins: scrypt password hashes, the YAML user list, roles, and login tokens
that lapse on an injected clock."""

from __future__ import annotations

import stat

import pytest

from inspection.console.auth import (
    ASK,
    AUDIT,
    EDIT_STANDARDS,
    ENGINEER,
    MIN_PASSWORD_LENGTH,
    OPERATOR,
    REVIEW,
    SWITCH_MODELS,
    VIEW,
    ExpiringTokens,
    Forbidden,
    User,
    UserDirectory,
    add_user,
    hash_password,
    require,
    verify_password,
)
from inspection.errors import UserError

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def stored() -> str:
    """One hash of :data:`PASSWORD` (scrypt is slow on purpose: hash once)."""
    return hash_password(PASSWORD)


# ---------------------------------------------------------------------- passwords


def test_a_hash_verifies_its_password_only(stored):
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "x", stored)
    assert not verify_password(PASSWORD.upper(), stored)
    assert not verify_password("", stored)


def test_two_hashes_of_one_password_differ_by_their_salt(stored):
    again = hash_password(PASSWORD)
    assert again != stored
    assert again.split("$")[4] != stored.split("$")[4]  # the salt field
    assert verify_password(PASSWORD, again)


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "not a hash",
        "scrypt$16384$8$1$only-five",
        "scrypt$x$8$1$AAAA$AAAA",  # n is not a number
        "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",  # n is not a power of two
        "scrypt$16384$8$1$!!!!$????",  # not base64
        "scrypt$16384$8$1$$",  # empty salt and digest
        "scrypt$16384$8$1$a$b$c",  # one field too many
    ],
)
def test_a_malformed_stored_hash_is_no_match_not_a_crash(malformed):
    assert verify_password(PASSWORD, malformed) is False


def test_another_scheme_with_the_right_digest_is_refused(stored):
    # The same fields under another scheme name must not verify: the scheme is checked.
    assert verify_password(PASSWORD, "bcrypt$" + stored.split("$", 1)[1]) is False


def test_a_short_password_is_refused():
    with pytest.raises(UserError, match=f"at least {MIN_PASSWORD_LENGTH} characters"):
        hash_password("x" * (MIN_PASSWORD_LENGTH - 1))
    assert verify_password("x" * MIN_PASSWORD_LENGTH, hash_password("x" * MIN_PASSWORD_LENGTH))


# ---------------------------------------------------------------------- the user file


def _write(tmp_path, text: str):
    path = tmp_path / "users.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("users: [unclosed\n", "cannot read the user list"),
        ("", "at least one user"),
        ("users: {}\n", "at least one user"),
        ("- just\n- a list\n", "at least one user"),
        ("users:\n  ana: {role: admin, password: 'scrypt$1$1$1$a$b'}\n", "role must be one of"),
        ("users:\n  ana: engineer\n", "role must be one of"),
        ("users:\n  ana: {role: engineer, password: hunter2hunter2}\n", "must be a scrypt hash"),
        ("users:\n  ana: {role: engineer}\n", "must be a scrypt hash"),
        ("users:\n  'bad name': {role: engineer, password: 'scrypt$1$1$1$a$b'}\n", "bad user"),
        ("users:\n  '-x': {role: engineer, password: 'scrypt$1$1$1$a$b'}\n", "bad user"),
        ("users:\n  12: {role: engineer, password: 'scrypt$1$1$1$a$b'}\n", "bad user"),
    ],
)
def test_a_malformed_user_file_is_an_error_naming_the_file(tmp_path, text, says):
    path = _write(tmp_path, text)
    with pytest.raises(UserError, match=says) as raised:
        UserDirectory.load(path)
    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_or_binary_user_file_is_an_error_naming_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "users.yaml"
    with pytest.raises(UserError, match="cannot read the user list") as raised:
        UserDirectory.load(missing)
    assert str(missing) in str(raised.value)
    binary = tmp_path / "users.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81users")
    with pytest.raises(UserError, match="cannot read the user list") as raised:
        UserDirectory.load(binary)
    assert str(binary) in str(raised.value)


@pytest.fixture(scope="module")
def two_users(tmp_path_factory):
    path = tmp_path_factory.mktemp("users") / "users.yaml"
    add_user(path, "li.wei", OPERATOR, "operator-pass-1")
    add_user(path, "ana@plant", ENGINEER, "engineer-pass-1")
    return path


def test_authenticate_right_wrong_and_unknown(two_users):
    users = UserDirectory.load(two_users)
    assert users.names() == ["ana@plant", "li.wei"]
    assert users.authenticate("li.wei", "operator-pass-1") == User("li.wei", OPERATOR)
    assert users.authenticate("ana@plant", "engineer-pass-1") == User("ana@plant", ENGINEER)
    assert users.authenticate("li.wei", "engineer-pass-1") is None  # someone else's
    assert users.authenticate("li.wei", "") is None
    assert users.authenticate("nobody", "operator-pass-1") is None
    assert users.get("li.wei") == User("li.wei", OPERATOR)
    assert users.get("nobody") is None and users.get(None) is None


def test_the_user_file_is_readable_by_its_owner_only(two_users, tmp_path):
    assert stat.S_IMODE(two_users.stat().st_mode) == 0o600
    assert "operator-pass-1" not in two_users.read_text(encoding="utf-8")
    # A file loosened by hand is tightened again by the next change.
    path = tmp_path / "users.yaml"
    add_user(path, "op", OPERATOR, "operator-pass-1")
    path.chmod(0o644)
    add_user(path, "eng", ENGINEER, "engineer-pass-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["users.yaml"]  # no temporary left


def test_add_user_replaces_a_user_and_keeps_the_others(tmp_path):
    path = tmp_path / "users.yaml"
    add_user(path, "op", OPERATOR, "operator-pass-1")
    add_user(path, "eng", ENGINEER, "engineer-pass-1")
    add_user(path, "op", ENGINEER, "promoted-pass-2")
    users = UserDirectory.load(path)
    assert users.names() == ["eng", "op"]
    assert users.authenticate("op", "operator-pass-1") is None
    assert users.authenticate("op", "promoted-pass-2") == User("op", ENGINEER)
    assert users.authenticate("eng", "engineer-pass-1") == User("eng", ENGINEER)


def test_add_user_refuses_to_rewrite_an_unreadable_file(tmp_path):
    path = _write(tmp_path, "users: [unclosed\n")
    with pytest.raises(UserError, match="cannot read the user list"):
        add_user(path, "op", OPERATOR, "operator-pass-1")
    assert path.read_text(encoding="utf-8") == "users: [unclosed\n"
    assert [p.name for p in tmp_path.iterdir()] == ["users.yaml"]


@pytest.mark.parametrize(
    ("name", "role", "password", "says"),
    [
        ("bad name", OPERATOR, "operator-pass-1", "bad user name"),
        ("op", "admin", "operator-pass-1", "role must be one of"),
        ("op", OPERATOR, "short", "at least"),
    ],
)
def test_add_user_refuses_bad_input_and_writes_nothing(tmp_path, name, role, password, says):
    path = tmp_path / "users.yaml"
    with pytest.raises(UserError, match=says):
        add_user(path, name, role, password)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- sessions


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_token_lives_until_its_ttl_then_is_gone():
    clock = FakeClock()
    tokens = ExpiringTokens(ttl_s=60.0, clock=clock)
    tokens["t1"] = "op"
    clock.now += 30.0
    tokens["t2"] = "eng"  # issued later, lapses later
    clock.now += 29.0  # t1 is 59 s old
    assert "t1" in tokens and tokens["t1"] == "op" and tokens.get("t1") == "op"
    assert sorted(tokens.keys()) == ["t1", "t2"]
    clock.now += 1.0  # t1 is 60 s old: lapsed
    assert "t1" not in tokens
    assert tokens.get("t1") is None and tokens.get("t1", "gone") == "gone"
    # Read by key, a lapsed token is no user (Gradio's logout lists, then reads each token).
    assert tokens["t1"] == ""
    assert tokens.keys() == ["t2"] and list(tokens) == ["t2"]
    assert tokens["t2"] == "eng"
    clock.now += 30.0
    assert tokens.keys() == [] and "t2" not in tokens


def test_an_unknown_token_is_absent_and_a_deleted_one_too():
    clock = FakeClock()
    tokens = ExpiringTokens(ttl_s=60.0, clock=clock)
    assert "never" not in tokens and tokens.get("never") is None
    tokens["t1"] = "op"
    del tokens["t1"]
    assert "t1" not in tokens and tokens.keys() == []
    tokens["t1"] = "op"  # a new login with the same token starts a new session
    assert tokens["t1"] == "op"


def test_a_new_login_renews_the_token():
    clock = FakeClock()
    tokens = ExpiringTokens(ttl_s=60.0, clock=clock)
    tokens["t1"] = "op"
    clock.now += 50.0
    tokens["t1"] = "op"
    clock.now += 50.0  # 100 s after the first login, 50 s after the second
    assert tokens.get("t1") == "op"


# ---------------------------------------------------------------------- roles


def test_operators_review_and_ask_engineers_also_edit_and_switch():
    operator, engineer = User("li.wei", OPERATOR), User("ana", ENGINEER)
    for action in (VIEW, REVIEW, ASK, AUDIT):
        assert require(operator, action) is operator
        assert require(engineer, action) is engineer
    for action in (EDIT_STANDARDS, SWITCH_MODELS):
        assert require(engineer, action) is engineer
        with pytest.raises(Forbidden, match="only an engineer") as raised:
            require(operator, action)
        assert "li.wei" in str(raised.value) and isinstance(raised.value, UserError)


@pytest.mark.parametrize("action", [VIEW, REVIEW, EDIT_STANDARDS])
def test_no_user_is_forbidden_everything(action):
    with pytest.raises(Forbidden, match="not logged in"):
        require(None, action)
