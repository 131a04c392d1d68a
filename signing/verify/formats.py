"""Signature formats beyond the PAdES baseline that real files use, read the way ISO 32000 defines them.

- ``/adbe.pkcs7.sha1``: the CMS encapsulates the SHA-1 digest of the /ByteRange bytes (enveloping), and
  its messageDigest is over that encapsulated digest. Both are checked.
- A CMS that encapsulates content under a *detached* /SubFilter is a format failure (pyHanko's and
  this project's policy; some validators accept it).
- A CMS with several SignerInfos: PAdES allows exactly one (TOTAL-FAILED); under /adbe.pkcs7.detached it
  is legal CMS that this verifier does not validate (INDETERMINATE, saying why).
- A signature dictionary that is the /V of several fields is one signature, reported once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from asn1crypto import cms
from pyhanko.pdf_utils import generic
from pyhanko.sign.validation.pdf_embedded import extract_contents

from .report import Indication, SignatureReport

__all__ = [
    "DETACHED_SUBFILTERS",
    "SHA1_SUBFILTER",
    "distinct_signatures",
    "sha1_content_matches",
    "unreadable_signature",
]

SHA1_SUBFILTER = "/adbe.pkcs7.sha1"
SHA1_WEAKNESS = (
    "/adbe.pkcs7.sha1 binds the document by its SHA-1 digest, which is no longer collision-resistant"
)
DETACHED_SUBFILTERS = frozenset({"/adbe.pkcs7.detached", "/ETSI.CAdES.detached"})


def sha1_content_matches(emb: Any) -> bool:
    """/adbe.pkcs7.sha1: the encapsulated content equals the SHA-1 digest of the /ByteRange bytes."""
    try:
        content = emb.signed_data["encap_content_info"]["content"]
        inner = bytes(content.native) if content.native is not None else None
        if inner is None:
            return False
        h = hashlib.sha1()
        stream = emb.reader.stream
        ranges = [int(v) for v in emb.byte_range]
        for start, length in zip(ranges[0::2], ranges[1::2], strict=True):
            stream.seek(start)
            left = length
            while left > 0:
                chunk = stream.read(min(left, 1 << 20))
                if not chunk:
                    return False
                h.update(chunk)
                left -= len(chunk)
        return h.digest() == inner
    except Exception:  # noqa: BLE001 - damaged structures match nothing
        return False


def _signer_info_count(sig_field: Any) -> tuple[int | None, str | None]:
    try:
        field = sig_field.get_object() if isinstance(sig_field, generic.IndirectObject) else sig_field
        sig = field["/V"]
        subfilter = str(sig.get("/SubFilter")) if sig.get("/SubFilter") is not None else None
        ci = cms.ContentInfo.load(extract_contents(sig))
        return len(ci["content"]["signer_infos"]), subfilter
    except Exception:  # noqa: BLE001
        return None, None


def unreadable_signature(sig_field: Any, broken: SignatureReport) -> SignatureReport:
    """Sharpen the report on a signature pyHanko could not read where the reason is known."""
    count, subfilter = _signer_info_count(sig_field)
    if count is None or count == 1:
        return broken
    if subfilter == "/ETSI.CAdES.detached" or subfilter is None:
        return replace(
            broken,
            reasons=(
                f"the CMS holds {count} SignerInfos; a PAdES signature (ETSI EN 319 142-1 §6.3) holds exactly one",
            ),
            subfilter=subfilter,
        )
    return replace(
        broken,
        indication=Indication.INDETERMINATE,
        sub_indication="SIG_CONSTRAINTS_FAILURE",
        subfilter=subfilter,
        eto=replace(broken.eto, verdict="INDETERMINATE"),
        reasons=(
            (
                f"the CMS holds {count} SignerInfos; this verifier validates a PDF signature made by exactly "
                "one signer, so none of them is verified"
            ),
        ),
    )


def distinct_signatures(
    fields: Iterable[tuple[Any, Any, Any]],
) -> tuple[list[tuple[Any, Any, Any]], list[str]]:
    """The (name, sig object, field) triples with each signature dictionary once, and notes on repeats."""
    seen: dict[Any, str] = {}
    repeats: dict[Any, list[str]] = {}
    kept = []
    for name, sig_obj, sig_field in fields:
        try:
            field = sig_field.get_object() if isinstance(sig_field, generic.IndirectObject) else sig_field
            ref = field.raw_get("/V")
            key = ref.reference if isinstance(ref, generic.IndirectObject) else id(sig_obj)
        except Exception:  # noqa: BLE001
            key = id(sig_obj)
        if key in seen:
            repeats.setdefault(key, [seen[key]]).append(str(name))
            continue
        seen[key] = str(name)
        kept.append((name, sig_obj, sig_field))
    notes = [
        f"one signature dictionary is the value of the fields {', '.join(names)}: reported once, as {names[0]}"
        for names in repeats.values()
    ]
    return kept, notes
