"""Recognized-certificate profiles: which roots, issuing CAs and policies a verifier accepts.

The list is configuration, not code (eto-verification.md §8): a versioned TOML file in ``certs/``. Each
profile names a root certificate file, optionally the issuing CA(s), the certificate-policy OID
prefixes and the periods in which the recognition is in force. Only the roots of this list are trust
anchors; a signature that chains to any other root is never reported as recognized.

Certificate paths in the file are relative to the file's folder; ``${data_dir}`` expands to the data
folder (``IAMSIGN_DATA_DIR``; without it the first of ``./data``, the user-level folder and this
checkout's ``data`` that has the file), which is where the sandbox generates its root at run time. A
profile whose certificate file does not exist is skipped and listed in ``TrustList.skipped``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509

from .errors import TrustListError

__all__ = [
    "DEFAULT_TRUST_LIST",
    "ProfileKind",
    "RecognitionInterval",
    "TrustList",
    "TrustProfile",
    "candidate_data_dirs",
    "load_certificates",
    "spki_sha256",
    "user_data_dir",
]

#: The trust list shipped with the project.
DEFAULT_TRUST_LIST = Path(__file__).resolve().parents[1] / "certs" / "trust-list.toml"

_FORMAT_VERSION = 1
_KEY_USAGES = {"digital_signature", "non_repudiation"}


class ProfileKind(StrEnum):
    """Where a profile's authority comes from; the report shows it next to every recognition."""

    RECOGNIZED = "recognized"
    """A certificate type recognized under the ETO (from the CDP disclosure record)."""
    SANDBOX = "sandbox"
    """The project's sandbox PKI: for testing only, never a recognized certificate in law."""
    OPERATOR = "operator"
    """A root the operator added for this run (``--trust``), with no policy constraint."""


@dataclass(frozen=True)
class RecognitionInterval:
    """A period in which the recognition is in force; ``end`` None means still in force."""

    start: dt.datetime
    end: dt.datetime | None = None

    def contains(self, moment: dt.datetime) -> bool:
        return self.start <= moment and (self.end is None or moment <= self.end)


def spki_sha256(cert: asn1_x509.Certificate) -> str:
    """SHA-256 (hex) of the certificate's SubjectPublicKeyInfo: roots are matched by key, not by name."""
    return hashlib.sha256(cert.public_key.dump()).hexdigest()


def _under(oid: str, prefix: str) -> bool:
    return oid == prefix or oid.startswith(prefix + ".")


@dataclass(frozen=True)
class TrustProfile:
    """One recognized-certificate profile (a row of the registry)."""

    id: str
    name: str
    root: asn1_x509.Certificate
    """The trust anchor."""
    kind: ProfileKind = ProfileKind.RECOGNIZED
    root_file: str = ""
    ca_name: str = ""
    """The certification authority, e.g. "Postmaster General (Hongkong Post CA)"."""
    recognized_ca_basis: str = ""
    """The legal basis of the CA's recognition, e.g. "s.34"."""
    issuing_ca_names: tuple[str, ...] = ()
    """Common names of the CAs allowed to issue the signer certificate; empty: any below the root. A name
    ending in ``*`` matches every common name that starts with what precedes the ``*``."""
    policy_oid_prefixes: tuple[str, ...] = ()
    """The signer certificate must carry a policy OID under one of these; empty: no policy constraint."""
    excluded_policy_prefixes: tuple[str, ...] = ()
    """Policy OIDs under these never satisfy the profile (e.g. server certificates under the CA's arc)."""
    recognition: tuple[RecognitionInterval, ...] = ()
    """When the recognition is in force; empty: no interval data (recognition at T cannot be shown)."""
    suspensions: tuple[RecognitionInterval, ...] = ()
    required_key_usage: tuple[str, ...] = ()
    """Key usages the signer certificate must all have (beyond digitalSignature or nonRepudiation)."""
    reliance_limit_hkd: int | None = None
    notes: str = ""

    @property
    def root_sha256(self) -> str:
        return hashlib.sha256(self.root.dump()).hexdigest()

    @property
    def root_key_sha256(self) -> str:
        return spki_sha256(self.root)

    def recognized_at(self, moment: dt.datetime) -> bool | None:
        """Whether the recognition is in force at ``moment``; None when the profile has no interval data."""
        if any(s.contains(moment) for s in self.suspensions):
            return False
        if not self.recognition:
            return None
        return any(i.contains(moment) for i in self.recognition)

    def policy_matches(self, policy_oids: Iterable[str]) -> bool | None:
        """Whether one of ``policy_oids`` lies under a prefix; None when the profile names no policy."""
        if not self.policy_oid_prefixes:
            return None
        oids = [o for o in policy_oids if not any(_under(o, x) for x in self.excluded_policy_prefixes)]
        return any(_under(oid, p) for oid in oids for p in self.policy_oid_prefixes)

    def issuer_allowed(self, issuer_common_name: str | None) -> bool:
        if not self.issuing_ca_names:
            return True
        if issuer_common_name is None:
            return False
        return any(
            issuer_common_name.startswith(n[:-1]) if n.endswith("*") else issuer_common_name == n
            for n in self.issuing_ca_names
        )

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind.value,
            "root_sha256": self.root_sha256,
            "policy_oid_prefixes": list(self.policy_oid_prefixes),
        }


@dataclass(frozen=True)
class TrustList:
    """The recognized-certificate profiles in force for a verification."""

    profiles: tuple[TrustProfile, ...]
    version: str = "unversioned"
    source: str = ""
    skipped: tuple[str, ...] = field(default_factory=tuple)
    """Profiles that could not be loaded (e.g. the sandbox root has not been generated yet), with why."""

    @property
    def anchors(self) -> list[asn1_x509.Certificate]:
        seen: dict[str, asn1_x509.Certificate] = {}
        for p in self.profiles:
            seen.setdefault(p.root_sha256, p.root)
        return list(seen.values())

    def profiles_for_anchor(self, anchor: asn1_x509.Certificate) -> list[TrustProfile]:
        """The profiles whose root has the key of ``anchor`` (several re-issues of a root share a key)."""
        key = spki_sha256(anchor)
        return [p for p in self.profiles if p.root_key_sha256 == key]

    def with_roots(self, roots: Sequence[asn1_x509.Certificate], source: str = "--trust") -> TrustList:
        """This list plus operator-supplied roots, each as a profile with no policy constraint."""
        extra = tuple(
            TrustProfile(
                id=f"operator-{spki_sha256(r)[:16]}",
                name=f"operator-supplied root: {r.subject.human_friendly}",
                root=r,
                kind=ProfileKind.OPERATOR,
                root_file=source,
            )
            for r in roots
        )
        return replace(self, profiles=self.profiles + extra)

    def without_sandbox(self) -> TrustList:
        """This list less its sandbox profiles (what ITE and production trust)."""
        return replace(self, profiles=tuple(p for p in self.profiles if p.kind is not ProfileKind.SANDBOX))

    @classmethod
    def empty(cls) -> TrustList:
        return cls(profiles=(), version="empty")

    @classmethod
    def load(cls, path: Path | str = DEFAULT_TRUST_LIST, data_dir: Path | str | None = None) -> TrustList:
        """Read a trust-list TOML file; ``data_dir`` default: :func:`candidate_data_dirs`."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise TrustListError(f"cannot read the trust list {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise TrustListError(f"the trust list {path} is not valid TOML: {exc}") from exc
        if data.get("format_version") != _FORMAT_VERSION:
            raise TrustListError(
                f"the trust list {path} has format_version {data.get('format_version')!r}, expected 1"
            )
        # Relative to the working directory (like the service's data folder), not to the list's folder.
        data_dirs = [Path(data_dir).absolute()] if data_dir else candidate_data_dirs()
        profiles: list[TrustProfile] = []
        skipped: list[str] = []
        for raw in data.get("profiles", []):
            pid = str(raw.get("id", "?"))
            profile, missing = None, None
            for folder in data_dirs:
                try:
                    profile = _profile_from_toml(raw, path.parent, folder)
                    break
                except FileNotFoundError as exc:
                    missing = missing or exc.filename
                    if "${data_dir}" not in str(raw.get("root_certificate", "")):
                        break
            if profile is None:
                where = " or ".join(str(d) for d in data_dirs)
                skipped.append(f"{pid}: certificate file {missing} not found (data folder: {where})")
                continue
            profiles.append(profile)
        return cls(
            profiles=tuple(profiles),
            version=str(data.get("registry_version", "unversioned")),
            source=str(path),
            skipped=tuple(skipped),
        )


def user_data_dir() -> Path:
    """The user-level data folder: ``$XDG_DATA_HOME/iamsign`` (default ``~/.local/share/iamsign``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "iamsign"


def candidate_data_dirs() -> list[Path]:
    """Where to look for the data folder, in order: ``IAMSIGN_DATA_DIR`` alone when it is set; else
    ``./data``, the user-level folder and the ``data`` folder of this checkout (where ``make run`` puts it)."""
    env = os.environ.get("IAMSIGN_DATA_DIR")
    if env:
        return [Path(env).absolute()]
    found: list[Path] = []
    for folder in (Path("./data"), user_data_dir(), DEFAULT_TRUST_LIST.parents[1] / "data"):
        folder = folder.absolute()
        if folder not in found:
            found.append(folder)
    return found


def load_certificates(path: Path | str) -> list[asn1_x509.Certificate]:
    """All certificates in a PEM (one or more blocks) or DER file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TrustListError(f"cannot read the certificate file {path}: {exc.strerror}") from exc
    try:
        if pem.detect(data):
            certs = [
                asn1_x509.Certificate.load(der)
                for kind, _, der in pem.unarmor(data, multiple=True)
                if kind == "CERTIFICATE"
            ]
        else:
            certs = [asn1_x509.Certificate.load(data)]
        for c in certs:
            c.native  # noqa: B018 - force a full parse
    except Exception as exc:
        raise TrustListError(f"{path} is not a PEM or DER certificate: {exc}") from exc
    if not certs:
        raise TrustListError(f"{path} holds no certificate")
    return certs


def _time(value: Any, what: str) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise TrustListError(f"{what}: {value!r} is not an ISO 8601 date or time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _intervals(raw: Any, what: str) -> tuple[RecognitionInterval, ...]:
    out = []
    for item in raw or ():
        start = _time(item.get("from"), what)
        if start is None:
            raise TrustListError(f"{what}: every interval needs a 'from'")
        out.append(RecognitionInterval(start, _time(item.get("to"), what)))
    return tuple(out)


def _profile_from_toml(raw: dict[str, Any], base: Path, data_dir: Path) -> TrustProfile:
    pid = raw.get("id")
    if not pid or not raw.get("root_certificate"):
        raise TrustListError("every trust-list profile needs an 'id' and a 'root_certificate'")
    file_text = str(raw["root_certificate"]).replace("${data_dir}", str(data_dir))
    root_path = Path(file_text)
    if not root_path.is_absolute():
        root_path = base / root_path
    roots = load_certificates(root_path)
    kind = ProfileKind(raw.get("kind", "recognized"))
    usages = tuple(raw.get("required_key_usage", ()))
    unknown = set(usages) - _KEY_USAGES
    if unknown:
        raise TrustListError(f"profile {pid}: unknown key usage(s) {sorted(unknown)}")
    limit = raw.get("reliance_limit_hkd")
    return TrustProfile(
        id=str(pid),
        name=str(raw.get("name", pid)),
        root=roots[0],
        kind=kind,
        root_file=str(raw["root_certificate"]),
        ca_name=str(raw.get("ca_name", "")),
        recognized_ca_basis=str(raw.get("recognized_ca_basis", "")),
        issuing_ca_names=tuple(str(n) for n in raw.get("issuing_ca_names", ())),
        policy_oid_prefixes=tuple(str(o) for o in raw.get("policy_oid_prefixes", ())),
        excluded_policy_prefixes=tuple(str(o) for o in raw.get("excluded_policy_prefixes", ())),
        recognition=_intervals(raw.get("recognition"), f"profile {pid} recognition"),
        suspensions=_intervals(raw.get("suspensions"), f"profile {pid} suspensions"),
        required_key_usage=usages,
        reliance_limit_hkd=int(limit) if limit is not None else None,
        notes=str(raw.get("notes", "")),
    )
