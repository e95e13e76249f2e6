"""Keyring: AES-GCM seal/open, the sealed layout, key rotation, hostile input."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from gossipreg.core.crypto import NONCE_SIZE, OVERHEAD, TAG_SIZE, VERSION, Keyring
from gossipreg.core.errors import AuthenticationError, ConfigError

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_C = bytes(range(200, 216))
LABEL = b"prod-eu"


# -- sealing and opening --------------------------------------------------------


@pytest.mark.parametrize("size", [16, 24, 32])
def test_round_trip_with_each_key_size(size: int) -> None:
    ring = Keyring(bytes(range(size)))
    for plaintext in (b"", b"x", b"hello gossip" * 100):
        sealed = ring.seal(plaintext, LABEL)
        assert len(sealed) == len(plaintext) + OVERHEAD
        assert ring.open(sealed, LABEL) == plaintext


def test_overhead_is_29_bytes() -> None:
    assert OVERHEAD == 29 == 1 + NONCE_SIZE + TAG_SIZE


def test_layout_is_version_nonce_ciphertext_tag() -> None:
    """The documented layout, checked against AES-GCM directly."""
    plaintext = b"ping"
    sealed = Keyring(KEY_A).seal(plaintext, LABEL)
    assert sealed[0] == VERSION == 1
    nonce, body = sealed[1:13], sealed[13:]
    assert len(body) == len(plaintext) + TAG_SIZE
    assert AESGCM(KEY_A).decrypt(nonce, body, LABEL) == plaintext
    assert plaintext not in sealed


def test_empty_label_round_trips() -> None:
    ring = Keyring(KEY_A)
    assert ring.open(ring.seal(b"data", b""), b"") == b"data"


def test_open_accepts_bytes_like_input() -> None:
    ring = Keyring(KEY_A)
    sealed = ring.seal(b"data", LABEL)
    assert ring.open(bytearray(sealed), LABEL) == b"data"
    assert ring.open(memoryview(sealed), LABEL) == b"data"


def test_wrong_key_fails() -> None:
    sealed = Keyring(KEY_A).seal(b"secret", LABEL)
    with pytest.raises(AuthenticationError, match="no key of 1"):
        Keyring(KEY_B).open(sealed, LABEL)


def test_wrong_label_fails() -> None:
    ring = Keyring(KEY_A)
    sealed = ring.seal(b"secret", LABEL)
    with pytest.raises(AuthenticationError):
        ring.open(sealed, b"prod-us")
    with pytest.raises(AuthenticationError):
        ring.open(sealed, b"")
    assert ring.open(sealed, LABEL) == b"secret"


def test_nonces_are_unique() -> None:
    ring = Keyring(KEY_A)
    sealed = [ring.seal(b"same plaintext", LABEL) for _ in range(1000)]
    assert len(set(sealed)) == len(sealed)
    assert len({s[1 : 1 + NONCE_SIZE] for s in sealed}) == len(sealed)


# -- tampering and hostile input ------------------------------------------------


def test_any_flipped_bit_fails() -> None:
    ring = Keyring(KEY_A)
    sealed = ring.seal(b"a registration of service foo", LABEL)
    for i in range(len(sealed)):
        for bit in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[i] ^= bit
            with pytest.raises(AuthenticationError):
                ring.open(bytes(tampered), LABEL)


def test_truncated_or_extended_input_fails() -> None:
    ring = Keyring(KEY_A)
    sealed = ring.seal(b"payload", LABEL)
    for length in range(len(sealed)):
        with pytest.raises(AuthenticationError):
            ring.open(sealed[:length], LABEL)
    with pytest.raises(AuthenticationError):
        ring.open(sealed + b"\x00", LABEL)


def test_short_input_message() -> None:
    with pytest.raises(AuthenticationError, match="shorter than the 29-byte minimum"):
        Keyring(KEY_A).open(b"\x01" * 28, LABEL)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_fails(version: int) -> None:
    ring = Keyring(KEY_A)
    sealed = ring.seal(b"payload", LABEL)
    with pytest.raises(AuthenticationError, match=f"unknown sealed-data version {version}"):
        ring.open(bytes([version]) + sealed[1:], LABEL)


@given(data=st.binary(max_size=200), label=st.binary(max_size=255))
def test_arbitrary_bytes_raise_only_authentication_error(data: bytes, label: bytes) -> None:
    ring = Keyring(KEY_A, [KEY_B, KEY_C])
    with pytest.raises(AuthenticationError):
        ring.open(data, label)


@given(body=st.binary(min_size=OVERHEAD - 1, max_size=200))
def test_arbitrary_version_one_bytes_raise_only_authentication_error(body: bytes) -> None:
    # Past the length and version checks, into AES-GCM itself.
    ring = Keyring(KEY_A, [KEY_B, KEY_C])
    with pytest.raises(AuthenticationError):
        ring.open(bytes([VERSION]) + body, LABEL)


# -- key management -------------------------------------------------------------


def test_keys_primary_first_and_duplicates_ignored() -> None:
    ring = Keyring(KEY_A, [KEY_B, KEY_A, KEY_B, KEY_C])
    assert ring.keys == (KEY_A, KEY_B, KEY_C)
    assert ring.primary == KEY_A
    assert len(ring) == 3
    assert KEY_C in ring
    assert bytes(32) not in ring


def test_secondary_keys_open_but_do_not_seal() -> None:
    old = Keyring(KEY_B)
    ring = Keyring(KEY_A, [KEY_B])
    assert ring.open(old.seal(b"from old", LABEL), LABEL) == b"from old"
    with pytest.raises(AuthenticationError):
        old.open(ring.seal(b"from new", LABEL), LABEL)


def test_install_is_idempotent() -> None:
    ring = Keyring(KEY_A)
    ring.install(KEY_B)
    ring.install(KEY_B)
    ring.install(KEY_A)
    assert ring.keys == (KEY_A, KEY_B)


def test_use_makes_an_installed_key_primary() -> None:
    ring = Keyring(KEY_A, [KEY_B, KEY_C])
    ring.use(KEY_C)
    assert ring.keys == (KEY_C, KEY_A, KEY_B)
    assert Keyring(KEY_C).open(ring.seal(b"x", LABEL), LABEL) == b"x"
    ring.use(KEY_C)  # already primary: unchanged
    assert ring.keys == (KEY_C, KEY_A, KEY_B)


def test_use_of_an_uninstalled_key_fails() -> None:
    ring = Keyring(KEY_A)
    with pytest.raises(ConfigError, match="not installed"):
        ring.use(KEY_B)
    assert ring.keys == (KEY_A,)


def test_remove() -> None:
    ring = Keyring(KEY_A, [KEY_B])
    ring.remove(KEY_B)
    assert ring.keys == (KEY_A,)
    ring.remove(KEY_B)  # not installed: no-op, like memberlist
    assert ring.keys == (KEY_A,)


def test_the_primary_cannot_be_removed() -> None:
    ring = Keyring(KEY_A, [KEY_B])
    with pytest.raises(ConfigError, match="primary"):
        ring.remove(KEY_A)
    assert ring.keys == (KEY_A, KEY_B)


def test_rotation_install_use_remove() -> None:
    """Three members rotate KEY_A -> KEY_B; nobody stops understanding anybody."""
    members = [Keyring(KEY_A) for _ in range(3)]

    def all_pairs_understand() -> None:
        for sender in members:
            sealed = sender.seal(b"alive", LABEL)
            for receiver in members:
                assert receiver.open(sealed, LABEL) == b"alive"

    all_pairs_understand()
    sealed_with_old = members[0].seal(b"old", LABEL)

    # 1. install everywhere, one member at a time.
    for member in members:
        member.install(KEY_B)
        all_pairs_understand()
    # 2. use everywhere, one member at a time: mixed senders must still work.
    for member in members:
        member.use(KEY_B)
        all_pairs_understand()
    sealed_with_new = members[0].seal(b"new", LABEL)
    for member in members:  # during the transition both keys open
        assert member.open(sealed_with_old, LABEL) == b"old"
        assert member.open(sealed_with_new, LABEL) == b"new"
    # 3. remove the old key everywhere.
    for member in members:
        member.remove(KEY_A)
        all_pairs_understand()
    for member in members:
        assert member.keys == (KEY_B,)
        assert member.open(sealed_with_new, LABEL) == b"new"
        with pytest.raises(AuthenticationError):
            member.open(sealed_with_old, LABEL)


def test_generate_key() -> None:
    first, second = Keyring.generate_key(), Keyring.generate_key()
    assert len(first) == len(second) == 32
    assert first != second
    ring = Keyring(first)
    assert ring.open(ring.seal(b"x", b""), b"") == b"x"


@pytest.mark.parametrize("size", [0, 1, 15, 17, 31, 33, 64])
def test_invalid_key_lengths(size: int) -> None:
    message = rf"is {size} bytes; an AES key must be 16, 24 or 32 bytes"
    with pytest.raises(ConfigError, match=rf"^primary: {message}"):
        Keyring(bytes(size))
    with pytest.raises(ConfigError, match=rf"^secondaries\[1\]: {message}"):
        Keyring(KEY_A, [KEY_B, bytes(size)])
    ring = Keyring(KEY_A)
    for operation in (ring.install, ring.use, ring.remove):
        with pytest.raises(ConfigError, match=rf"^key: {message}"):
            operation(bytes(size))
    assert ring.keys == (KEY_A,)


def test_keys_must_be_bytes() -> None:
    text = base64.b64encode(KEY_A).decode()
    with pytest.raises(ConfigError, match=r"got str .*from_base64"):
        Keyring(text)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be bytes, got int"):
        Keyring(KEY_A, [42])  # type: ignore[list-item]
    assert Keyring(bytearray(KEY_A)).primary == KEY_A


def test_repr_does_not_leak_keys() -> None:
    ring = Keyring(KEY_A, [KEY_B])
    text = repr(ring)
    assert text == "<Keyring: 2 key(s)>"
    assert KEY_A.hex() not in text


# -- base64 ---------------------------------------------------------------------


def test_from_base64() -> None:
    encoded = [base64.b64encode(k).decode() for k in (KEY_A, KEY_B, KEY_C)]
    ring = Keyring.from_base64(encoded)
    assert ring.keys == (KEY_A, KEY_B, KEY_C)
    # A trailing newline, as read from a key file, is fine.
    assert Keyring.from_base64([encoded[1] + "\n"]).primary == KEY_B


def test_from_base64_errors() -> None:
    good = base64.b64encode(KEY_A).decode()
    with pytest.raises(ConfigError, match="at least one key"):
        Keyring.from_base64([])
    with pytest.raises(ConfigError, match=r"^keys\[1\]: is not valid base64$"):
        Keyring.from_base64([good, "not base64!"])
    with pytest.raises(ConfigError, match=r"^keys\[0\]: is not valid base64$"):
        Keyring.from_base64(["AAAA\u00e9AAA"])
    with pytest.raises(ConfigError, match=r"^keys\[0\]: is not valid base64$"):
        Keyring.from_base64([good[:-1]])  # bad padding
    with pytest.raises(ConfigError, match=r"^keys\[1\]: is 20 bytes"):
        Keyring.from_base64([good, base64.b64encode(bytes(20)).decode()])
    with pytest.raises(ConfigError, match="single string"):
        Keyring.from_base64(good)
    with pytest.raises(ConfigError, match=r"^keys\[0\]: must be a base64 str, got bytes"):
        Keyring.from_base64([KEY_A])  # type: ignore[list-item]


def test_nonces_count_up_from_a_random_start() -> None:
    a, b = Keyring(KEY_A), Keyring(KEY_A)
    first = [int.from_bytes(a.seal(b"x", LABEL)[1:13], "big") for _ in range(3)]
    assert first[1] == first[0] + 1
    assert first[2] == first[1] + 1
    other = int.from_bytes(b.seal(b"x", LABEL)[1:13], "big")
    assert abs(other - first[0]) > 2**32, "two keyrings start far apart (random start)"
