"""B-LT and B-LTA augmentation: validation data gathered once per chain, and as few revisions as allowed.

Validation data (the chain's certificates, OCSP responses, CRLs) depends on the signer's certificate and
the TSA's, not on the document: :class:`ValidationDataCache` gathers it once per chain and hands the same
data to every document of that signer for a window (``window_s``, never past the earliest ``nextUpdate``
of what was fetched). Concurrent documents of one chain wait for the one fetch in flight.

:func:`add_ltv` writes the DSS (with the signature's VRI) and, at B-LTA, the document timestamp in ONE
incremental update: the document timestamp's byte range then covers the DSS written beside it, which is
what PAdES B-LTA asks (EN 319 142-1, 5.4: the archive timestamp covers the validation data). The TSA of
the document timestamp is the one of the signature timestamp, whose chain and revocation data are already
in that DSS, so no DSS update follows the document timestamp.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, crl, ocsp, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.general import CMSExtractionError
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.validation import DocumentSecurityStore
from pyhanko.sign.validation.dss import collect_validation_info
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter

from .cms import find_signer_certificate
from .errors import DamagedPdfError, RevocationInfoError, SigningError, TimestampError
from .services import SigningServices

__all__ = ["DEFAULT_CACHE", "ValidationData", "ValidationDataCache", "add_ltv", "check_existing_dss"]

_MD = "sha256"
# Space for the document timestamp's own token (TSA certificate, issuing CA, signature): hex digits.
_DOC_TIMESTAMP_RESERVED = 16384


@dataclass(frozen=True)
class ValidationData:
    """What a DSS needs for one chain, and until when it may be reused."""

    certs: tuple[x509.Certificate, ...]
    ocsps: tuple[ocsp.OCSPResponse, ...]
    crls: tuple[crl.CertificateList, ...]
    reusable_until: dt.datetime


def _fingerprint(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.dump()).digest()


def signer_certificate(signed_data: cms.SignedData) -> x509.Certificate:
    """The certificate of the SignedData's first signer (instead of pyHanko's ``extract_certificate_info``,
    which compares every certificate's issuer Name the slow way); raises as that does when it is absent."""
    found = find_signer_certificate(signed_data, signed_data["signer_infos"][0]["sid"])
    if found is None:
        raise CMSExtractionError("signer certificate not included in signature")
    return found


def chain_key(embedded: Any, services: SigningServices) -> tuple[bytes, ...]:
    """The signer's certificate, the signature timestamp's TSA certificate(s) and the trust anchors."""
    certs = [embedded.signer_cert]
    for signed in (False, True):
        for tst in extract_tst_data_iter(embedded.signer_info, signed=signed):
            certs.append(signer_certificate(tst))
    return (
        *(_fingerprint(c) for c in certs),
        b"|",
        *sorted(_fingerprint(c) for c in services.trust_roots),
    )


def _next_updates(ocsps, crls) -> list[dt.datetime]:
    times = []
    for resp in ocsps:
        for single in resp["response_bytes"]["response"].parsed["tbs_response_data"]["responses"]:
            nu = single["next_update"].native
            if nu is not None:
                times.append(nu)
    for c in crls:
        nu = c["tbs_cert_list"]["next_update"].native
        if nu is not None:
            times.append(nu)
    return times


class ValidationDataCache:
    """Validation data per chain, reused for ``window_s`` seconds (single flight per event loop)."""

    def __init__(self, window_s: float = 600.0) -> None:
        self.window_s = window_s
        self._entries: dict[tuple[bytes, ...], ValidationData] = {}
        self._in_flight: dict[tuple[bytes, ...], asyncio.Task] = {}
        self.fetches = 0
        """How many times data was gathered from the network (for benchmarks and tests)."""

    def clear(self) -> None:
        self._entries.clear()

    async def get(self, embedded: Any, services: SigningServices) -> ValidationData:
        key = chain_key(embedded, services)
        now = dt.datetime.now(dt.UTC)
        hit = self._entries.get(key)
        if hit is not None and hit.reusable_until > now:
            return hit
        task = self._in_flight.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._gather(key, embedded, services))
            self._in_flight[key] = task
            task.add_done_callback(self._forget(key))
        return await asyncio.shield(task)

    def _forget(self, key: tuple[bytes, ...]) -> Callable[[asyncio.Task], None]:
        def done(task: asyncio.Task) -> None:
            if self._in_flight.get(key) is task:
                del self._in_flight[key]

        return done

    async def _gather(
        self, key: tuple[bytes, ...], embedded: Any, services: SigningServices
    ) -> ValidationData:
        vc = services.validation_context()
        try:
            paths = await collect_validation_info(embedded, vc)
            certs: dict[bytes, x509.Certificate] = {}
            for path in paths:
                for cert in path:
                    certs.setdefault(_fingerprint(cert), cert)
            ocsps, crls = tuple(vc.ocsps), tuple(vc.crls)
        except Exception as exc:  # path building, fetch and parse errors
            raise RevocationInfoError(
                f"could not gather revocation information for B-LT (chain or OCSP/CRL unavailable): {exc}"
            ) from exc
        finally:
            await vc.aclose()
        self.fetches += 1
        until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.window_s)
        until = min([until, *_next_updates(ocsps, crls)])
        data = ValidationData(tuple(certs.values()), ocsps, crls, until)
        now = dt.datetime.now(dt.UTC)
        for stale in [k for k, v in self._entries.items() if v.reusable_until <= now]:
            del self._entries[stale]  # one entry per signer and window: never more than are in use
        self._entries[key] = data
        return data


DEFAULT_CACHE = ValidationDataCache()
"""The process's cache: every finish in this process shares it."""


@dataclass(frozen=True)
class _Embedded:
    """What gathering needs of the signature just embedded, taken from its CMS (no re-read of the PDF)."""

    signed_data: Any
    signer_info: Any
    signer_cert: x509.Certificate

    @classmethod
    def of(cls, cms_der: bytes) -> _Embedded:
        signed_data = cms.ContentInfo.load(cms_der)["content"]
        return cls(signed_data, signed_data["signer_infos"][0], signer_certificate(signed_data))


async def _earlier_signatures_data(
    reader, this: _Embedded, services: SigningServices, cache: ValidationDataCache
) -> list[ValidationData]:
    """The validation data of the signatures already in the file (the earlier signers of an envelope), so
    that the last step's DSS serves them all.

    Best effort: an earlier signature whose chain or revocation data cannot be gathered (another
    service's, an untrusted one) keeps what it had; this signature's own data is what it promises.
    """
    found: list[ValidationData] = []
    mine = this.signer_info.dump()
    try:
        if sum(1 for _ in enumerate_sig_fields(reader, filled_status=True)) <= 1:
            return found  # only this signature: nothing earlier to parse (its CMS is in ``this``)
        earlier = [e for e in reader.embedded_regular_signatures if e.signer_info.dump() != mine]
    except Exception:  # noqa: BLE001 - a damaged earlier signature: not this signature's promise
        return found
    for emb in earlier:
        try:
            found.append(
                await cache.get(_Embedded(emb.signed_data, emb.signer_info, emb.signer_cert), services)
            )
        except Exception:  # noqa: BLE001, S112 - see the docstring
            continue
    return found


def _damaged_dss(exc: Exception) -> DamagedPdfError:
    return DamagedPdfError(
        "the PDF's document security store (DSS) is damaged, so validation data cannot be added to it "
        f"(B-LT and up): {type(exc).__name__}: {exc}"
    )


def check_existing_dss(reader) -> None:
    """A DSS already in the file must read, or :func:`add_ltv` cannot add to it: checked when the
    document is prepared, so that it is refused before the signer is asked, not after the approval."""
    try:
        DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return
    except Exception as exc:  # asn1crypto and pyHanko raise many kinds on a damaged DSS
        raise _damaged_dss(exc) from exc


async def add_ltv(
    f,
    cms_der: bytes,
    contents_size: int,
    services: SigningServices,
    *,
    document_timestamp: bool,
    cache: ValidationDataCache | None = None,
) -> None:
    """Add the DSS for the signature ``cms_der`` (embedded in a /Contents of ``contents_size`` bytes) and,
    if asked, the document timestamp: one revision, appended to ``f`` in place."""
    timestamper = services.timestamper
    if document_timestamp and timestamper is None:
        raise TimestampError("B-LTA needs a time-stamping authority, and none is configured")
    cache = cache or DEFAULT_CACHE
    this = _Embedded.of(cms_der)
    data = await cache.get(this, services)
    f.seek(0)
    writer = IncrementalPdfFileWriter(f, strict=True)
    # the VRI key is the SHA-1 of /Contents as stored: the CMS and its zero padding
    contents = cms_der + bytes(contents_size - len(cms_der))
    try:  # pyHanko reads the file's existing DSS (an uploaded one may be damaged) and adds to it
        DocumentSecurityStore.supply_dss_in_writer(
            writer,
            contents.hex().encode("ascii"),
            certs=data.certs,
            ocsps=data.ocsps,
            crls=data.crls,
        )
    except Exception as exc:  # asn1crypto and pyHanko raise many kinds on a damaged DSS
        raise _damaged_dss(exc) from exc
    for earlier in await _earlier_signatures_data(writer.prev, this, services, cache):
        # no VRI entry: an earlier signature's own VRI, if it has one, stays as it was
        DocumentSecurityStore.supply_dss_in_writer(
            writer, None, certs=earlier.certs, ocsps=earlier.ocsps, crls=earlier.crls
        )
    if not document_timestamp or timestamper is None:
        writer.write_in_place()
        f.flush()
        return
    try:
        await PdfTimeStamper(timestamper).async_timestamp_pdf(
            writer, _MD, bytes_reserved=_DOC_TIMESTAMP_RESERVED, in_place=True
        )
    except SigningError:
        raise
    except Exception as exc:
        raise TimestampError(f"the document timestamp for B-LTA could not be added: {exc}") from exc
    f.flush()
