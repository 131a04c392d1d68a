"""What the signatures of one file share, so that a file with many signatures is not paid for again
per signature.

* :func:`index_revisions`: which revision introduced each object, memoised on the reader. pyHanko's
  difference analysis asks this tens of thousands of times for a file with many LTV revisions, each
  time walking every xref section; the answer never changes for an opened file.
* :class:`SharedValidation`: the DSS read and parsed once, and one set of validation data handlers
  (certificate registry, revocation information, POE, fetchers) for every signature the ETSI basic
  or with-time process checks, so certificates, CRLs and OCSP responses are loaded, indexed and
  fetched once per file. A signature carrying its own revocation archive in the CMS keeps handlers of
  its own (its data is then added to nothing else).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import ades
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    SignatureValidationSpec,
    bootstrap_validation_data_handlers,
)
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

__all__ = ["SharedValidation", "index_revisions"]

logger = logging.getLogger(__name__)


def index_revisions(reader: PdfFileReader) -> None:
    """Memoise ``reader.xrefs.get_introducing_revision`` (a pure function of the opened file)."""
    xrefs = reader.xrefs
    lookup = xrefs.get_introducing_revision
    cached = functools.lru_cache(maxsize=65536)(lookup)
    setattr(xrefs, "get_introducing_revision", cached)  # noqa: B010 - on this reader's xrefs only


class SharedValidation:
    """Validation data for every signature of one file; :meth:`aclose` when the file is done."""

    def __init__(self, reader: PdfFileReader) -> None:
        self._reader = reader
        self._dss: LocalKnowledge | None = None
        self._handlers: Any = None

    def dss_knowledge(self) -> LocalKnowledge:
        """OCSP responses, CRLs and certificates of the DSS, parsed once."""
        if self._dss is None:
            try:
                self._dss = ades._dss_to_local_knowledge(reader=self._reader)
            except Exception as exc:  # noqa: BLE001 - a hostile DSS must not stop the verification
                logger.info("ignoring unreadable validation data: %s", exc)
                self._dss = LocalKnowledge()
        return self._dss

    @staticmethod
    def cms_knowledge(emb: EmbeddedPdfSignature) -> LocalKnowledge:
        try:
            return ades._adobe_revinfo_archival_to_local_knowledge(emb)
        except Exception as exc:  # noqa: BLE001
            logger.info("ignoring unreadable validation data: %s", exc)
            return LocalKnowledge()

    def handlers(self, spec: SignatureValidationSpec, timing: ValidationTimingInfo | None) -> Any:
        """The file's handlers, built from ``spec`` (which holds the DSS knowledge) the first time."""
        if self._handlers is None:
            self._handlers = bootstrap_validation_data_handlers(spec=spec, timing_info=timing)
        return self._handlers

    async def aclose(self) -> None:
        if self._handlers is not None:
            try:
                await self._handlers.aclose()
            except Exception as exc:  # noqa: BLE001
                logger.debug("closing the validation data handlers failed: %s", exc)
            self._handlers = None
