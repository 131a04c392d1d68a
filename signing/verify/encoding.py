"""DER checks on a signature's CMS (RFC 5652 §5.4, X.690 §10-11).

The signature value covers the DER encoding of the signed attributes. Signed attributes stored in any
other encoding (indefinite lengths, long-form lengths, constructed strings, an unsorted SET OF) are
not what the signer's key signed under the rules, and a verifier that hashes them as stored accepts
bytes a DER re-encoding would change: such a signature is failed, never passed. The CMS structure
around them must be DER too ("badly encoded CMS"); certificates, CRLs and unsigned attributes are
separately signed objects (or unsigned) and are not judged here.
"""

from __future__ import annotations

from asn1crypto import cms, core

from ..der import der_problem

__all__ = ["cms_der_problem", "signed_attrs_der_problem"]


def signed_attrs_der_problem(signer_info: cms.SignerInfo) -> str | None:
    """Why the signed attributes as stored are not DER, or None (also None when there are none)."""
    attrs = signer_info["signed_attrs"]
    if not attrs:
        return None
    stored = attrs.dump()
    # The stored [0] IMPLICIT tag stands for the SET OF that is signed: check it as that SET.
    problem = der_problem(b"\x31" + stored[1:])
    return f"the signed attributes are not DER-encoded: {problem}" if problem else None


def _present(value) -> list[str]:
    """The names of a SEQUENCE's fields that are present in its encoding, in order."""
    return [name for name, _spec, _ in value._fields if not isinstance(value[name], core.Void)]


def cms_der_problem(content: bytes) -> str | None:
    """Why the CMS in /Contents (zero padding allowed after it) is not DER, or None.

    Certificates ([0]), CRLs ([1]) and each SignerInfo's unsigned attributes are not descended into.
    """
    try:
        ci = cms.ContentInfo.load(content)
        sd = ci["content"]
        names = _present(sd)
        infos = [_present(si) for si in sd["signer_infos"]]
    except Exception as exc:  # noqa: BLE001 - a CMS that does not parse at all
        return f"the CMS does not parse: {exc}"
    # ContentInfo = SEQUENCE { contentType, [0] EXPLICIT SignedData }: SignedData is at path (1, 0).
    sd_path = (1, 0)
    skip: set[tuple[int, ...]] = {
        (*sd_path, i) for i, name in enumerate(names) if name in ("certificates", "crls")
    }
    if "signer_infos" in names:
        at = names.index("signer_infos")
        for k, present in enumerate(infos):
            if "unsigned_attrs" in present:
                skip.add((*sd_path, at, k, present.index("unsigned_attrs")))
    problem = der_problem(content, frozenset(skip), allow_trailing=True)
    return f"the CMS is not DER-encoded: {problem}" if problem else None
