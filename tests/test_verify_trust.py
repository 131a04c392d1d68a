"""The trust list: the shipped file, loading errors, matching by key, policy prefixes, recognition periods."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from signing.errors import TrustListError
from signing.trust import DEFAULT_TRUST_LIST, ProfileKind, RecognitionInterval, TrustList, TrustProfile

from .conftest import asn1

UTC = dt.UTC


def test_shipped_list_skips_the_sandbox_root_until_it_exists(tmp_path):
    trust = TrustList.load(DEFAULT_TRUST_LIST, data_dir=tmp_path)
    assert [p for p in trust.profiles if p.kind is ProfileKind.SANDBOX] == []
    assert trust.version and "iamsign-sandbox-iamsmart-cert" in trust.skipped[0]


def test_shipped_list_with_a_sandbox_root(test_pki, tmp_path):
    (tmp_path / "sandbox" / "pki").mkdir(parents=True)
    shutil.copyfile(test_pki.pki.directory / "root.cert.pem", tmp_path / "sandbox" / "pki" / "root.cert.pem")
    trust = TrustList.load(data_dir=tmp_path)
    (profile,) = [p for p in trust.profiles if p.kind is ProfileKind.SANDBOX]
    assert profile.policy_oid_prefixes == ("2.999.344.1",)
    assert asn1(test_pki.pki.root).dump() in [a.dump() for a in trust.anchors]


def _write(tmp_path, text: str):
    path = tmp_path / "list.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("not = [valid", "not valid TOML"),
        ("format_version = 2\n", "format_version"),
        ("format_version = 1\n[[profiles]]\nname = 'x'\n", "needs an 'id'"),
    ],
)
def test_bad_lists_raise_typed_errors(tmp_path, text, fragment):
    with pytest.raises(TrustListError) as err:
        TrustList.load(_write(tmp_path, text))
    assert fragment in err.value.message and err.value.code == "trust_list_invalid"


def test_missing_list(tmp_path):
    with pytest.raises(TrustListError):
        TrustList.load(tmp_path / "nope.toml")


def test_relative_root_and_bad_fields(test_pki, tmp_path):
    shutil.copyfile(test_pki.pki.directory / "root.cert.pem", tmp_path / "root.pem")
    good = "format_version = 1\n[[profiles]]\nid = 'a'\nroot_certificate = 'root.pem'\n"
    assert TrustList.load(_write(tmp_path, good)).profiles[0].id == "a"
    with pytest.raises(TrustListError):
        TrustList.load(_write(tmp_path, good + "required_key_usage = ['key_encipherment']\n"))
    with pytest.raises(TrustListError):
        TrustList.load(_write(tmp_path, good + "recognition = [{ from = 'yesterday' }]\n"))
    (tmp_path / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(TrustListError):
        TrustList.load(_write(tmp_path, good.replace("root.pem", "junk.pem")))


def _profile(test_pki, **kw) -> TrustProfile:
    return TrustProfile(id="p", name="p", root=asn1(test_pki.pki.root), **kw)


def test_policy_prefix_matches_whole_arcs(test_pki):
    p = _profile(test_pki, policy_oid_prefixes=("1.3.6.1.4.1.16030.1.1",))
    assert p.policy_matches(["1.3.6.1.4.1.16030.1.1"]) is True
    assert p.policy_matches(["1.3.6.1.4.1.16030.1.1.17"]) is True
    assert p.policy_matches(["1.3.6.1.4.1.16030.1.17"]) is False
    assert p.policy_matches([]) is False
    assert _profile(test_pki).policy_matches(["1.2.3"]) is None


def test_recognition_periods_and_suspensions(test_pki):
    t = dt.datetime(2024, 6, 1, tzinfo=UTC)
    p = _profile(
        test_pki,
        recognition=(
            RecognitionInterval(dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(2025, 1, 1, tzinfo=UTC)),
        ),
        suspensions=(
            RecognitionInterval(dt.datetime(2024, 5, 1, tzinfo=UTC), dt.datetime(2024, 7, 1, tzinfo=UTC)),
        ),
    )
    assert p.recognized_at(t) is False
    assert p.recognized_at(dt.datetime(2023, 1, 1, tzinfo=UTC)) is True
    assert p.recognized_at(dt.datetime(2026, 1, 1, tzinfo=UTC)) is False
    assert _profile(test_pki).recognized_at(t) is None


def test_operator_roots_match_by_key(test_pki):
    trust = TrustList.empty().with_roots([asn1(test_pki.pki.root)])
    (profile,) = trust.profiles
    assert profile.kind is ProfileKind.OPERATOR and profile.policy_oid_prefixes == ()
    assert trust.profiles_for_anchor(asn1(test_pki.pki.root)) == [profile]
    assert trust.profiles_for_anchor(asn1(test_pki.pki.issuing_ca)) == []


def test_relative_data_dir_is_relative_to_the_working_directory(test_pki, tmp_path, monkeypatch):
    (tmp_path / "data" / "sandbox" / "pki").mkdir(parents=True)
    shutil.copyfile(
        test_pki.pki.directory / "root.cert.pem", tmp_path / "data" / "sandbox" / "pki" / "root.cert.pem"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IAMSIGN_DATA_DIR", raising=False)
    (sandbox,) = [p for p in TrustList.load().profiles if p.kind is ProfileKind.SANDBOX]
    assert sandbox.id == "iamsign-sandbox-iamsmart-cert"
