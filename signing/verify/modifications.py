"""Changes after signing (C12): neither blind nor paranoid.

pyHanko's difference analysis judges each later revision structurally, with rules for what PDF and
PAdES allow after signing (further signatures, DSS/VRI, document timestamps, metadata, form filling)
plus those of :mod:`signing.verify.diff_rules` (freed objects, structure tree, VRI maintenance, comments
where DocMDP allows them). What the rules
accept is then checked against what the pages show (:mod:`signing.verify.shadow`), because a "form
filling" update can still hide, replace or cover what the signer saw.

When the analysis itself cannot finish (pyHanko raising on an odd file, the renderer failing), the result
is *incomplete*: neither accepted nor rejected, which the report turns into INDETERMINATE. A DocMDP or
FieldMDP entry that cannot be read is taken as the strictest setting (fail closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pyhanko.pdf_utils.reader import process_data_at_eof
from pyhanko.sign.diff_analysis import (
    DiffResult,
    ModificationLevel,
    SuspiciousModification,
)
from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec, MDPPerm
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import SignatureCoverageLevel

from .diff_rules import ALLOWED_CHANGES_POLICY, ANNOTATING_POLICY
from .shadow import Finding, compare_revisions

__all__ = ["ALLOWED_CHANGES_POLICY", "Integrity", "analyse_modifications"]

#: The most a later revision may do unless a DocMDP of level 3 allows annotations too.
ALLOWED_AFTER_SIGNING = ModificationLevel.FORM_FILLING


@dataclass(frozen=True)
class Integrity:
    """Coverage and the changes after signing, as far as they could be established."""

    coverage: SignatureCoverageLevel | None
    level: ModificationLevel | None
    docmdp: Any
    digest_error: str | None = None
    diff_message: str | None = None
    incomplete: str | None = None
    """Why the modification analysis could not complete (INDETERMINATE, not a verdict)."""
    findings: tuple[Finding, ...] = ()
    """What the final revision shows differently from the signed one (shadow attacks)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def byte_range_ok(self) -> bool:
        return self.coverage in (SignatureCoverageLevel.ENTIRE_FILE, SignatureCoverageLevel.ENTIRE_REVISION)

    @property
    def unmodified(self) -> bool:
        if not self.byte_range_ok or self.level is None or self.incomplete:
            return False
        if self.coverage is SignatureCoverageLevel.ENTIRE_FILE:
            return True
        if self.findings:
            return False
        allowed = ModificationLevel.ANNOTATIONS if self.docmdp is MDPPerm.ANNOTATE else ALLOWED_AFTER_SIGNING
        if self.level is ModificationLevel.OTHER or self.level > allowed:
            return False
        return not (self.docmdp is not None and self.level.value > self.docmdp.value)


def _record_refusal(emb: EmbeddedPdfSignature, coverage: SignatureCoverageLevel, message: str) -> None:
    """Leave pyHanko's integrity state as if its diff analysis had flagged the changes (for LTA)."""
    state: Any = emb  # pyHanko declares these attributes None-typed
    state.coverage = coverage
    state.diff_result = SuspiciousModification(message)
    state._integrity_checked = True


def _mdp_fail_closed(emb: EmbeddedPdfSignature) -> tuple[Any, list[str]]:
    """DocMDP and FieldMDP as pyHanko reads them; the strictest setting when they cannot be read."""
    notes: list[str] = []
    state: Any = emb
    try:
        docmdp = emb.docmdp_level
    except Exception as exc:  # noqa: BLE001 - damaged /Reference or /TransformParams
        docmdp = MDPPerm.NO_CHANGES
        state._docmdp, state._docmdp_queried = docmdp, True
        notes.append(f"the DocMDP permissions cannot be read ({exc}); no changes are taken as allowed")
    try:
        emb.fieldmdp  # noqa: B018
    except Exception as exc:  # noqa: BLE001
        state._fieldmdp, state._fieldmdp_queried = FieldMDPSpec(FieldMDPAction.ALL), True
        notes.append(f"the FieldMDP settings cannot be read ({exc}); every field is taken as locked")
    return docmdp, notes


_LINEARIZED = re.compile(
    rb"^\s*%PDF-[^\n]*\n(?:%[^\n]*\n)?\s*\d+\s+\d+\s+obj\s*<<(?:(?!>>).)*?/Linearized\b", re.DOTALL
)
_LENGTH = re.compile(rb"/L\s+(\d+)")


def _settle_linearized_revision(emb: EmbeddedPdfSignature) -> str | None:
    """A linearized first revision has two cross-reference sections, which pyHanko counts as two
    revisions: the signature may be "in" the first while the signed bytes end after the second. When
    the file starts with a linearization dictionary whose /L is where the /ByteRange ends, and the
    ``startxref`` there names a later revision whose sections all lie inside the signed bytes, that
    revision is the signed one (everything in it is signed)."""
    try:
        end = int(emb.byte_range[2]) + int(emb.byte_range[3])
        stream = emb.reader.stream
        stream.seek(0)
        head = stream.read(2048)
        match = _LINEARIZED.match(head)
        if not match:
            return None
        dictionary = head[match.start() : head.index(b">>", match.end()) + 2]
        length = _LENGTH.search(dictionary)
        if length is None or int(length.group(1)) != end:
            return None
        stream.seek(end)
        startxref = process_data_at_eof(stream)
        xrefs = emb.reader.xrefs
        for revision in range(emb.signed_revision + 1, xrefs.total_revisions):
            if xrefs.get_startxref_for_revision(revision) != startxref:
                continue
            if all(xrefs.get_xref_container_info(r).end_location <= end for r in range(revision + 1)):
                state: Any = emb
                state.signed_revision = revision
                return "the signed revision is linearized: its two cross-reference sections count as one"
            return None
    except Exception:  # noqa: BLE001 - an odd header is just not a linearized one
        return None
    return None


def _coverage(emb: EmbeddedPdfSignature) -> tuple[SignatureCoverageLevel | None, str | None]:
    found: SignatureCoverageLevel | None = emb.coverage
    if found is not None:
        return found, None
    try:
        return emb.evaluate_signature_coverage(), None
    except Exception as exc:  # noqa: BLE001
        return None, f"the /ByteRange cannot be processed: {exc}"


async def analyse_modifications(
    emb: EmbeddedPdfSignature,
    max_later_revisions: int,
    *,
    path: str | None = None,
    render: bool = True,
    render_timeout: float = 20.0,
) -> Integrity:
    """Coverage, difference analysis and the shadow comparison; pyHanko's state is left set for LTA."""
    docmdp, notes = _mdp_fail_closed(emb)
    linearized = _settle_linearized_revision(emb)
    if linearized:
        notes.append(linearized)
    try:
        later = emb.reader.xrefs.total_revisions - 1 - emb.signed_revision
    except Exception:  # noqa: BLE001
        later = 0
    if later > max_later_revisions:
        coverage, error = _coverage(emb)
        if coverage is None:
            return Integrity(None, None, docmdp, digest_error=error)
        # Refused rather than incomplete: a file built to outrun the analysis is not given the benefit.
        message = f"{later} revisions follow the signature, more than the {max_later_revisions} this verifier analyses"
        _record_refusal(emb, coverage, message)
        return Integrity(coverage, ModificationLevel.OTHER, docmdp, diff_message=message, notes=tuple(notes))
    try:
        policy = ANNOTATING_POLICY if docmdp is MDPPerm.ANNOTATE else ALLOWED_CHANGES_POLICY
        emb.compute_integrity_info(diff_policy=policy)
    except Exception as exc:  # noqa: BLE001 - the diff engine failed on an odd file
        coverage, error = _coverage(emb)
        if coverage is None:
            return Integrity(None, None, docmdp, digest_error=error)
        message = f"modification analysis could not complete: {type(exc).__name__}: {exc}"
        _record_refusal(emb, coverage, message)
        return Integrity(coverage, None, docmdp, incomplete=message, notes=tuple(notes))
    coverage, diff = emb.coverage, emb.diff_result
    if not isinstance(diff, DiffResult):
        args = getattr(diff, "args", None)
        diff_message: str | None = str(args[0] if args else diff)
        level: ModificationLevel = ModificationLevel.OTHER
    else:
        diff_message, level = None, diff.modification_level
    if coverage is not SignatureCoverageLevel.ENTIRE_REVISION:
        return Integrity(coverage, level, docmdp, diff_message=diff_message, notes=tuple(notes))
    accepted = level is not ModificationLevel.OTHER
    try:
        signed_end = int(emb.byte_range[2]) + int(emb.byte_range[3])
    except Exception:  # noqa: BLE001
        signed_end = 0
    if path is None:
        name = getattr(emb.reader.stream, "name", None)
        path = name if isinstance(name, str) else None
    shadow = await compare_revisions(
        emb.reader,
        path,
        emb.signed_revision,
        signed_end,
        render=render and accepted,
        timeout=render_timeout,
    )
    findings = tuple(shadow.findings)
    if accepted and shadow.incomplete:
        message = f"modification analysis could not complete: {shadow.incomplete}"
        _record_refusal(emb, coverage, message)
        return Integrity(
            coverage,
            level,
            docmdp,
            diff_message=diff_message,
            incomplete=message,
            findings=findings,
            notes=tuple(notes),
        )
    if findings:
        text = "; ".join(f.describe() for f in findings)
        if accepted:
            _record_refusal(emb, coverage, f"what the pages show changed after signing: {text}")
    return Integrity(
        coverage, level, docmdp, diff_message=diff_message, findings=findings, notes=tuple(notes)
    )
