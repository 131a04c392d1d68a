"""Whitelisting rules added to pyHanko's difference analysis, for what PDF and PAdES allow after signing
and pyHanko's default policy refuses: freed objects nothing uses, structure-tree updates, DSS/VRI
entries pruned or updated (LTV maintenance), and, where DocMDP level 3 allows them, added comments.

Each rule approves only what it has checked; anything else stays unexplained (pyHanko level OTHER).
What any accepted change does to the pages is judged separately (:mod:`signing.verify.shadow`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.reader import HistoricalResolver, RawPdfPath
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    ModificationLevel,
    QualifiedWhitelistRule,
    ReferenceUpdate,
    StandardDiffPolicy,
    SuspiciousModification,
    WhitelistRule,
)
from pyhanko.sign.diff_analysis.commons import assert_not_stream, compare_dicts, compare_key_refs
from pyhanko.sign.diff_analysis.constants import ROOT_EXEMPT_STRICT_COMPARISON, VRI_KEY_PATTERN
from pyhanko.sign.diff_analysis.rules.file_structure_rules import CatalogModificationRule
from pyhanko.sign.diff_analysis.rules.form_field_rules import DSSCompareRule, _validate_dss_substructure
from pyhanko.sign.diff_analysis.rules_api import Context

__all__ = [
    "ALLOWED_CHANGES_POLICY",
    "ANNOTATING_POLICY",
    "AnnotationRule",
    "FreedObjectRule",
    "PrunableDssRule",
    "StructureTreeRule",
]

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


_VRI_STREAM_KEYS = frozenset({"/Cert", "/CRL", "/OCSP"})
_VRI_KEYS = frozenset({"/Type", "/TU", "/TS"}) | _VRI_STREAM_KEYS


class PrunableDssRule(WhitelistRule):
    """pyHanko's DSS rule, except that VRI entries may also be pruned or updated, as PAdES allows when
    validation data is maintained (ETSI EN 319 142-1 §5.4); every VRI entry there is still checked for form.

    pyHanko's own rule (kept for the DSS itself) refuses any change to an existing VRI entry.
    """

    def apply(self, old: HistoricalResolver, new: HistoricalResolver) -> Iterable[ReferenceUpdate]:
        dss_context = Context.from_absolute(old, RawPdfPath("/Root", "/DSS"))
        old_dss, new_dss = yield from misc.map_with_return(
            compare_key_refs("/DSS", old, old.root, new.root),
            ReferenceUpdate.curry_ref(context_checked=dss_context),
        )
        if new_dss is None:
            return
        if old_dss is None:
            old_dss = generic.DictionaryObject()
        if not isinstance(old_dss, generic.DictionaryObject) or not isinstance(
            new_dss, generic.DictionaryObject
        ):
            raise SuspiciousModification("/DSS is not a dictionary")
        stream_keys = {"/Certs", "/CRLs", "/OCSPs"}
        unexpected = set(new_dss.keys()) - ({"/Type", "/VRI"} | stream_keys)
        if unexpected:
            raise SuspiciousModification(f"Unexpected keys in DSS: {unexpected}.")
        yield from _validate_dss_substructure(
            old, new, old_dss, new_dss, stream_keys, is_vri=False, context=dss_context
        )
        old_vri, new_vri = yield from misc.map_with_return(
            compare_key_refs("/VRI", old, old_dss, new_dss),
            ReferenceUpdate.curry_ref(
                context_checked=Context.from_absolute(old, RawPdfPath("/Root", "/DSS", "/VRI"))
            ),
        )
        if new_vri is None:
            return  # the whole /VRI pruned
        if not isinstance(new_vri, generic.DictionaryObject):
            raise SuspiciousModification("/VRI is not a dictionary")
        if not isinstance(old_vri, generic.DictionaryObject):
            old_vri = generic.DictionaryObject()
        for key in list(new_vri):
            old_value = old_vri.raw_get(key) if key in old_vri else None
            new_value = new_vri.raw_get(key)
            if (
                old_value is not None
                and old_value == new_value
                and not (
                    isinstance(new_value, generic.IndirectObject)
                    and new_value.reference in new.explicit_refs_in_revision()
                )
            ):
                continue  # unchanged
            yield from _vri_entry(old, new, key, old_value, new_value)


def _vri_entry(
    old: HistoricalResolver, new: HistoricalResolver, key: str, old_value: Any, new_value: Any
) -> Iterator[ReferenceUpdate]:
    """Approve one added or updated VRI entry after checking its form (as pyHanko does for added ones)."""
    if not VRI_KEY_PATTERN.match(key):
        raise SuspiciousModification(f"VRI key {key} is not formatted correctly.")
    context = Context.from_absolute(old, RawPdfPath("/Root", "/DSS", "/VRI", key))
    if isinstance(new_value, generic.IndirectObject):
        yield ReferenceUpdate(new_value.reference, context_checked=context)
        new_value = new_value.get_object()
    assert_not_stream(new_value)
    if not isinstance(new_value, generic.DictionaryObject):
        raise SuspiciousModification("VRI entries should be dictionaries")
    if not set(new_value.keys()) <= _VRI_KEYS:
        raise SuspiciousModification(
            f"Unexpected keys in VRI dictionary: {set(new_value.keys()) - _VRI_KEYS}."
        )
    old_dict = old_value.get_object() if isinstance(old_value, generic.IndirectObject) else old_value
    if not isinstance(old_dict, generic.DictionaryObject):
        old_dict = generic.DictionaryObject()
    yield from _validate_dss_substructure(
        old, new, old_dict, new_value, _VRI_STREAM_KEYS, is_vri=True, context=context
    )
    try:
        ts_ref = new_value.get_value_as_reference("/TS", optional=True)
        if ts_ref is not None and old.is_ref_unassignable(ts_ref):
            yield ReferenceUpdate(ts_ref)
    except misc.IndirectObjectExpected:
        pass


def _global_rules() -> list[QualifiedWhitelistRule]:
    # the catalog may gain or change /StructTreeRoot (its nodes are vetted by StructureTreeRule)
    catalog = CatalogModificationRule(ignored_keys={*ROOT_EXEMPT_STRICT_COMPARISON, "/StructTreeRoot"})
    rules: list[QualifiedWhitelistRule] = []
    for rule in DEFAULT_DIFF_POLICY.global_rules:
        if isinstance(rule, CatalogModificationRule):
            rule = catalog
        elif isinstance(getattr(rule, "rule", None), DSSCompareRule):
            rule = PrunableDssRule().as_qualified(ModificationLevel.LTA_UPDATES)
        rules.append(rule)
    return [*rules, FreedObjectRule(), StructureTreeRule()]


ALLOWED_CHANGES_POLICY = StandardDiffPolicy(
    global_rules=_global_rules(),
    form_rule=DEFAULT_DIFF_POLICY.form_rule,
    reject_object_freeing=False,
)
"""pyHanko's default policy, plus freed objects, structure-tree updates and VRI maintenance."""

ANNOTATING_POLICY = StandardDiffPolicy(
    global_rules=[*_global_rules(), AnnotationRule()],
    form_rule=DEFAULT_DIFF_POLICY.form_rule,
    reject_object_freeing=False,
)
"""For signatures whose DocMDP is level 3 (annotations allowed): the above, plus added annotations."""
