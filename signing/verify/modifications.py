"""Changes after signing (C12): neither blind nor paranoid.

pyHanko's difference analysis judges each later revision structurally, with rules for what PDF and
PAdES allow after signing (further signatures, DSS/VRI, document timestamps, metadata, form filling)
plus two added here: freed objects nothing uses any more, and structure-tree updates. What the rules
accept is then checked against what the pages show (:mod:`signing.verify.shadow`), because a "form
filling" update can still hide, replace or cover what the signer saw.

When the analysis itself cannot finish (pyHanko raising on an odd file, the renderer failing), the result
is *incomplete*: neither accepted nor rejected, which the report turns into INDETERMINATE. A DocMDP or
FieldMDP entry that cannot be read is taken as the strictest setting (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import HistoricalResolver, RawPdfPath, process_data_at_eof
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    DiffResult,
    ModificationLevel,
    QualifiedWhitelistRule,
    ReferenceUpdate,
    StandardDiffPolicy,
    SuspiciousModification,
)
from pyhanko.sign.diff_analysis.commons import compare_dicts
from pyhanko.sign.diff_analysis.constants import ROOT_EXEMPT_STRICT_COMPARISON
from pyhanko.sign.diff_analysis.rules.file_structure_rules import CatalogModificationRule
from pyhanko.sign.diff_analysis.rules_api import Context
from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec, MDPPerm
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import SignatureCoverageLevel

from .shadow import Finding, compare_revisions

__all__ = ["ALLOWED_CHANGES_POLICY", "Integrity", "analyse_modifications"]

#: The most a later revision may do unless a DocMDP of level 3 allows annotations too.
ALLOWED_AFTER_SIGNING = ModificationLevel.FORM_FILLING
_STRUCT_KEYS = (
    "/K",
    "/ParentTree",
    "/IDTree",
    "/Nums",
    "/Names",
    "/Kids",
    "/RoleMap",
    "/ClassMap",
    "/A",
    "/C",
)
_MAX_STRUCT_NODES = 100_000


class FreedObjectRule(QualifiedWhitelistRule):
    """Objects a later revision frees are fine when the new revision no longer uses them.

    A freed object resolves to null, so one still in use would change what uses it; those are left
    unexplained (and what the pages show is compared separately anyway).
    """

    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        freed = new.refs_freed_in_revision()
        if not freed:
            return
        new._load_reverse_xref_cache()
        for ref in freed:
            if not new._get_usages_of_ref(ref):
                yield ModificationLevel.LTA_UPDATES, ReferenceUpdate(ref, context_checked=None)


class StructureTreeRule(QualifiedWhitelistRule):
    """Updates of the logical structure tree (tagging) are not visible changes.

    Only structure nodes are approved, each through the path by which it is reached from
    ``/Root/StructTreeRoot``: pages, content streams or annotations a structure element points to
    (``/Pg``, ``/Stm``, ``/Obj``) are not, so an object also used by a page stays unexplained.
    """

    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        root = new.root
        if "/StructTreeRoot" not in root:
            return
        changed = new.explicit_refs_in_revision()
        for ref, path in _struct_nodes(
            root.raw_get("/StructTreeRoot"), RawPdfPath("/Root", "/StructTreeRoot")
        ):
            if ref in changed:
                yield (
                    ModificationLevel.LTA_UPDATES,
                    ReferenceUpdate(ref, context_checked=Context.from_absolute(old, path)),
                )


class AnnotationRule(QualifiedWhitelistRule):
    """New annotations (comments, not form widgets) added to a page: allowed where DocMDP level 3 says so.

    A page may change only in its /Annots, every annotation it had must still be there, and each added
    one must be a new object whose new dependencies are approved with it. Changing or removing existing
    annotations is not approved here, and what the added ones cover is checked by rendering.
    """

    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        changed = new.explicit_refs_in_revision()
        for page_ref in _page_refs(new.root):
            if page_ref in changed and not old.is_ref_unassignable(page_ref):
                yield from self._page(old, new, page_ref)

    @staticmethod
    def _page(
        old: HistoricalResolver, new: HistoricalResolver, page_ref: generic.Reference
    ) -> Iterator[tuple[ModificationLevel, ReferenceUpdate]]:
        old_page, new_page = old(page_ref), new(page_ref)
        if not compare_dicts(old_page, new_page, frozenset({"/Annots"}), raise_exc=False):
            return
        old_refs = _annot_refs(old_page)
        new_refs = _annot_refs(new_page)
        if old_refs is None or new_refs is None or not set(old_refs) <= set(new_refs):
            return
        added = [r for r in new_refs if r not in set(old_refs)]
        approvals = []
        for ref in added:
            annot = new(ref)
            if not old.is_ref_unassignable(ref) or not isinstance(annot, generic.DictionaryObject):
                return
            if annot.get("/Subtype") == "/Widget":
                continue  # form fields are the form rule's business
            approvals.append(ref)
            approvals.extend(new.collect_dependencies(annot, since_revision=new.revision))
        if not approvals:
            return
        yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(page_ref, context_checked=None)
        annots = new_page.raw_get("/Annots")
        if isinstance(annots, generic.IndirectObject):
            yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(annots.reference, context_checked=None)
        for ref in approvals:
            yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(ref, context_checked=None)


def _annot_refs(page: Any) -> list[generic.Reference] | None:
    if "/Annots" not in page:
        return []
    annots = page["/Annots"]
    if not isinstance(annots, generic.ArrayObject):
        return None
    refs = [
        a.reference
        for a in (annots.raw_get(i) for i in range(len(annots)))
        if isinstance(a, generic.IndirectObject)
    ]
    return refs if len(refs) == len(annots) else None


def _page_refs(root: Any) -> Iterator[generic.Reference]:
    seen: set[generic.Reference] = set()
    stack = [root.raw_get("/Pages")]
    while stack and len(seen) < 100_000:
        node = stack.pop()
        if not isinstance(node, generic.IndirectObject) or node.reference in seen:
            continue
        seen.add(node.reference)
        obj = node.get_object()
        if not isinstance(obj, generic.DictionaryObject):
            continue
        kids = obj.get("/Kids") if "/Kids" in obj else None
        if isinstance(kids, generic.ArrayObject):
            stack.extend(kids.raw_get(i) for i in range(len(kids)))
        else:
            yield node.reference


def _struct_nodes(start: Any, path: RawPdfPath) -> Iterator[tuple[generic.Reference, RawPdfPath]]:
    seen: set[generic.Reference] = set()
    stack = [(start, path)]
    while stack and len(seen) < _MAX_STRUCT_NODES:
        obj, where = stack.pop()
        if isinstance(obj, generic.IndirectObject):
            ref = obj.reference
            if ref in seen:
                continue
            seen.add(ref)
            yield ref, where
            obj = obj.get_object()
        if isinstance(obj, generic.ArrayObject):
            stack.extend((item, where + i) for i, item in enumerate(obj))
        elif isinstance(obj, generic.DictionaryObject) and not isinstance(obj, generic.StreamObject):
            if obj.get("/Type") in ("/MCR", "/OBJR"):
                continue  # marked-content and object references point at pages and annotations
            for key in _STRUCT_KEYS:
                if key in obj:
                    stack.append((obj.raw_get(key), where + key))


def _global_rules() -> list[QualifiedWhitelistRule]:
    # the catalog may gain or change /StructTreeRoot (its nodes are vetted by StructureTreeRule)
    catalog = CatalogModificationRule(ignored_keys={*ROOT_EXEMPT_STRICT_COMPARISON, "/StructTreeRoot"})
    rules = [
        catalog if isinstance(r, CatalogModificationRule) else r for r in DEFAULT_DIFF_POLICY.global_rules
    ]
    return [*rules, FreedObjectRule(), StructureTreeRule()]


ALLOWED_CHANGES_POLICY = StandardDiffPolicy(
    global_rules=_global_rules(),
    form_rule=DEFAULT_DIFF_POLICY.form_rule,
    reject_object_freeing=False,
)
"""pyHanko's default policy, plus freed objects and structure-tree updates."""

ANNOTATING_POLICY = StandardDiffPolicy(
    global_rules=[*_global_rules(), AnnotationRule()],
    form_rule=DEFAULT_DIFF_POLICY.form_rule,
    reject_object_freeing=False,
)
"""For signatures whose DocMDP is level 3 (annotations allowed): the above, plus added annotations."""


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
