"""Certificate facts the verifier checks itself: identity, validity at T, key usage, policies, chain."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    ValidationError,
)
from pyhanko_certvalidator.path import ValidationPath

from ..trust import TrustList, TrustProfile
from .report import SignerIdentity

__all__ = [
    "ChainResult",
    "check_chain",
    "identity",
    "issuer_common_name",
    "key_strength_ok",
    "key_usage_ok",
    "policy_oids",
]

SIGNING_KEY_USAGES = frozenset({"digital_signature", "non_repudiation"})


def _common_name(name: x509.Name) -> str | None:
    for rdn in name.chosen:
        for atv in rdn:
            if atv["type"].native == "common_name":
                return str(atv["value"].native)
    return None


def issuer_common_name(cert: x509.Certificate) -> str | None:
    return _common_name(cert.issuer)


def policy_oids(cert: x509.Certificate) -> tuple[str, ...]:
    value = cert.certificate_policies_value
    if value is None:
        return ()
    return tuple(p["policy_identifier"].dotted for p in value)


def key_usages(cert: x509.Certificate) -> tuple[str, ...]:
    value = cert.key_usage_value
    return tuple(sorted(value.native)) if value is not None else ()


def identity(cert: x509.Certificate) -> SignerIdentity:
    """Who the certificate names; nothing is decoded beyond what it states."""
    subject = cert.subject.human_friendly
    return SignerIdentity(
        name=_common_name(cert.subject) or subject,
        certificate_sha256=hashlib.sha256(cert.dump()).hexdigest(),
        issuer=cert.issuer.human_friendly,
        serial=format(cert.serial_number, "X"),
        subject=subject,
        not_before=cert.not_valid_before,
        not_after=cert.not_valid_after,
        policy_oids=policy_oids(cert),
        key_usage=key_usages(cert),
    )


def key_usage_ok(cert: x509.Certificate, profile: TrustProfile | None) -> tuple[bool, str | None]:
    """C9: digitalSignature or nonRepudiation, plus every usage the profile requires."""
    usages = set(key_usages(cert))
    if cert.key_usage_value is None:
        return False, "the signer certificate has no keyUsage extension"
    if not usages & SIGNING_KEY_USAGES:
        return (
            False,
            f"the signer certificate's key usage ({', '.join(sorted(usages)) or 'none'}) allows no signing",
        )
    if profile is not None:
        missing = set(profile.required_key_usage) - usages
        if missing:
            return False, f"the profile {profile.id} requires key usage {', '.join(sorted(missing))}"
    return True, None


MIN_RSA_BITS = 2048


def key_strength_ok(cert: x509.Certificate) -> tuple[bool, str | None]:
    """C14 (part): RSA keys of at least 2048 bits; other algorithms are left to pyHanko's policy."""
    try:
        key = cert.public_key
        if key.algorithm in ("rsa", "rsassa_pss") and key.bit_size < MIN_RSA_BITS:
            return False, f"the signer's RSA key has {key.bit_size} bits, fewer than {MIN_RSA_BITS}"
    except Exception as exc:  # noqa: BLE001
        return False, f"the signer's public key cannot be read: {exc}"
    return True, None


@dataclass(frozen=True)
class ChainResult:
    """What path validation at T (revocation aside) found."""

    path: ValidationPath | None
    """The path to a trust-list root, if one was found."""
    chain_found: bool
    valid_at_t: bool
    problem: str | None = None
    """Why the chain is broken or out of its validity at T."""
    not_yet_valid: bool = False
    broken: bool = False
    """A CA signature or constraint is broken (as opposed to no path or a time problem)."""

    @property
    def anchor(self) -> x509.Certificate | None:
        return self.path.first if self.path is not None else None

    def certificates(self) -> list[x509.Certificate]:
        return list(self.path.iter_certs(include_root=True)) if self.path is not None else []


def chain_from_path(path: ValidationPath, moment: dt.datetime) -> ChainResult:
    """C6 on a path pyHanko already validated: every certificate below the anchor valid at ``moment``."""
    certs = list(path.iter_certs(include_root=False))
    bad = [c for c in certs if not (c.not_valid_before <= moment <= c.not_valid_after)]
    if not bad:
        return ChainResult(path, True, True)
    names = ", ".join(c.subject.human_friendly for c in bad)
    return ChainResult(
        path,
        True,
        False,
        f"not valid at {moment.isoformat()}: {names}",
        not_yet_valid=any(moment < c.not_valid_before for c in bad),
    )


async def check_chain(
    leaf: x509.Certificate, others: Sequence[x509.Certificate], trust: TrustList, moment: dt.datetime
) -> ChainResult:
    """Build and validate a path from ``leaf`` to a trust-list root at ``moment``, without revocation.

    Revocation is judged separately (by the ETSI process) so that this answers only C3 and C6.
    """
    anchors = trust.anchors
    if not anchors:
        return ChainResult(None, False, False, "the trust list has no roots")

    if leaf.self_signed != "no" and not any(a.dump() == leaf.dump() for a in anchors):
        # Its own issuer and not a root of the list: there is no chain at all (not a broken one).
        return ChainResult(
            None, False, False, "the signer certificate is self-signed and not a trust-list root"
        )

    def context(at: dt.datetime) -> ValidationContext:
        return ValidationContext(
            trust_roots=anchors,
            other_certs=list(others),
            moment=at,
            allow_fetching=False,
            revocation_mode="soft-fail",
        )

    try:
        path = await CertificateValidator(leaf, validation_context=context(moment)).async_validate_path()
        return ChainResult(path, True, True)
    except PathBuildingError as exc:
        return ChainResult(None, False, False, f"no certificate path to a trust-list root: {exc}")
    except (ExpiredError, NotYetValidError) as exc:
        # The path exists; find it again at a moment where the leaf is valid, to report on it.
        path = None
        for probe in (
            leaf.not_valid_before + dt.timedelta(seconds=1),
            leaf.not_valid_after - dt.timedelta(seconds=1),
        ):
            try:
                path = await CertificateValidator(
                    leaf, validation_context=context(probe)
                ).async_validate_path()
                break
            except Exception:  # noqa: BLE001 - any failure: no path to report on
                path = None
        return ChainResult(
            path,
            True,
            False,
            f"a certificate of the chain was not valid at {moment.isoformat()}: {exc}",
            not_yet_valid=isinstance(exc, NotYetValidError),
        )
    except (PathValidationError, ValidationError) as exc:
        return ChainResult(None, True, False, f"the certificate chain does not validate: {exc}", broken=True)
    except Exception as exc:  # noqa: BLE001 - hostile certificates raise anything
        return ChainResult(
            None, False, False, f"the certificate chain cannot be processed: {exc}", broken=True
        )


def leaf_valid_at(cert: x509.Certificate, moment: dt.datetime) -> bool:
    return cert.not_valid_before <= moment <= cert.not_valid_after
