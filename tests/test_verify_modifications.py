"""Changes after signing (issue 11 item 3): shadow attacks caught even where pyHanko's diff calls them form
filling; what PDF and PAdES allow (LTV updates, form filling into blank fields) accepted; a diff engine
that cannot finish is INDETERMINATE, never a verdict."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, ModificationLevel
from pyhanko.sign.fields import MDPPerm
from pyhanko.sign.signers import cms_embedder
from pyhanko.sign.signers.cms_embedder import docmdp_reference_dictionary

from fixtures.generate import simple_pdf
from signing.model import PadesLevel
from signing.verify import Indication, VerificationReport, VerifyOptions, verify_pdf_sync

from .linearized_fixtures import linearized_signed_pdf
from .shadow_fixtures import (
    add_comment,
    add_structure_tree,
    fill_field,
    form_pdf,
    free_objects,
    point_field_at_spare,
    prune_vri,
)
from .verify_fixtures import (
    certify,
    change_page_content,
    recognized_trust,
    sign,
    simple_signer,
)


@pytest.fixture(scope="module")
def trust(test_pki):
    return recognized_trust(test_pki.pki)


@pytest.fixture(scope="module")
def files(test_pki, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("verify-modifications")
    pki, services = test_pki.pki, test_pki.services()
    sources = {
        # the signer sees "PAY 100 HKD" (page text) and an empty, invisible field over it
        "overlay": form_pdf(
            d / "o.pdf", page_text="PAY 100 HKD", field_at="over", field_text="", opaque=False
        ),
        # the signer sees "100 HKD" shown by the field, in blank space
        "replace": form_pdf(
            d / "r.pdf", page_text="Invoice", field_at="blank", field_text="100 HKD", opaque=False
        ),
        # the page text says 1,000,000, but the field's opaque appearance covers it with "PAY 100 HKD"
        "hide": form_pdf(
            d / "h.pdf", page_text="PAY 1,000,000 HKD", field_at="over", field_text="PAY 100 HKD", opaque=True
        ),
        # an empty field over "PAY 100 HKD", and an unused opaque "PAY 1,000,000 HKD" appearance prepared
        "hide-and-replace": form_pdf(
            d / "hr.pdf",
            page_text="PAY 100 HKD",
            field_at="over",
            field_text="",
            opaque=False,
            spare_text="PAY 1,000,000 HKD",
        ),
        # an empty field in blank space: what forms are for
        "fill": form_pdf(d / "f.pdf", page_text="Invoice", field_at="blank", field_text="", opaque=False),
    }
    out: dict[str, Path] = {}

    async def build() -> None:
        for name, src in sources.items():
            out[f"{name}-signed"] = await sign(
                src, d / f"{name}-signed.pdf", pki, test_pki.signer, PadesLevel.B_T, services
            )
        letter = simple_pdf(d / "letter.pdf")
        out["lta"] = await sign(letter, d / "lta.pdf", pki, test_pki.signer, PadesLevel.B_LTA, services)
        out["bt"] = await sign(letter, d / "bt.pdf", pki, test_pki.signer, PadesLevel.B_T, services)
        # a second signature over a DSS that already has VRI entries
        out["lta-2"] = await sign(
            out["lta"], d / "lta-2.pdf", pki, test_pki.signer, PadesLevel.B_LT, services
        )

    asyncio.run(build())
    with pytest.MonkeyPatch.context() as mp:
        # a certification signature whose DocMDP /P is no permission level at all
        mp.setattr(cms_embedder, "docmdp_reference_dictionary", _bad_docmdp)
        src = form_pdf(d / "c.pdf", page_text="Invoice", field_at="blank", field_text="", opaque=False)
        out["bad-docmdp"] = asyncio.run(certify(src, d / "bad-docmdp.pdf", pki, test_pki.signer))
    out["bad-docmdp-filled"] = fill_field(
        out["bad-docmdp"], d / "bad-docmdp-filled.pdf", "100 HKD", opaque=False
    )
    out["overlay"] = fill_field(out["overlay-signed"], d / "overlay.pdf", "PAY 1,000,000 HKD", opaque=True)
    out["replace"] = fill_field(out["replace-signed"], d / "replace.pdf", "1,000,000 HKD", opaque=False)
    out["hide"] = fill_field(out["hide-signed"], d / "hide.pdf", "", opaque=False)
    out["hide-and-replace"] = point_field_at_spare(
        out["hide-and-replace-signed"], d / "hide-and-replace.pdf", "PAY 1,000,000 HKD"
    )
    out["append"] = fill_field(out["replace-signed"], d / "append.pdf", "100 HKD 000", opaque=False)
    out["regenerated"] = fill_field(
        out["replace-signed"], d / "regen.pdf", "100 HKD", opaque=False, shift=0.3
    )
    out["fill"] = fill_field(out["fill-signed"], d / "fill.pdf", "100 HKD", opaque=False)
    out["content"] = change_page_content(out["bt"], d / "content.pdf")
    with open(out["fill-signed"], "rb") as f:
        page = PdfFileReader(f).root["/Pages"]["/Kids"][0]
        old_appearance = page["/Annots"][0]["/AP"].raw_get("/N").reference
        contents = page.raw_get("/Contents").reference
    out["freed"] = free_objects(
        out["fill"], d / "freed.pdf", [(old_appearance.idnum, old_appearance.generation)]
    )
    out["freed-in-use"] = free_objects(
        out["fill-signed"], d / "freed-in-use.pdf", [(contents.idnum, contents.generation)]
    )
    out["tagged"] = add_structure_tree(out["bt"], d / "tagged.pdf")
    out["vri-pruned"] = prune_vri(out["lta-2"], d / "vri-pruned.pdf")
    out["lta-vri-pruned"] = prune_vri(out["lta"], d / "lta-vri-pruned.pdf")
    out["annotate"] = asyncio.run(
        certify(simple_pdf(d / "a.pdf"), d / "annotate.pdf", pki, test_pki.signer, MDPPerm.ANNOTATE)
    )
    out["annotate-comment"] = add_comment(
        out["annotate"], d / "annotate-comment.pdf", (300, 300, 320, 320), "ok", cover=False
    )
    out["annotate-cover"] = add_comment(
        out["annotate"], d / "annotate-cover.pdf", (60, 750, 400, 790), "PAID IN FULL", cover=True
    )
    fill_forms = asyncio.run(
        certify(simple_pdf(d / "ff.pdf"), d / "ff-signed.pdf", pki, test_pki.signer, MDPPerm.FILL_FORMS)
    )
    out["fillforms-comment"] = add_comment(
        fill_forms, d / "fillforms-comment.pdf", (300, 300, 320, 320), "ok", cover=False
    )
    out["linearized"] = asyncio.run(linearized_signed_pdf(d / "linearized.pdf", simple_signer(test_pki)))
    out["linearized-then-signed"] = asyncio.run(
        sign(out["linearized"], d / "linearized-2.pdf", pki, test_pki.signer, PadesLevel.B_T, services)
    )
    return out


def _bad_docmdp(permission_level):
    from pyhanko.pdf_utils import generic

    ref = docmdp_reference_dictionary(permission_level)
    ref["/TransformParams"]["/P"] = generic.NumberObject(7)
    return ref


def verify(path: Path, trust, offline: bool = False) -> VerificationReport:
    return verify_pdf_sync(path, VerifyOptions(trust=trust, offline=offline))


def only(report: VerificationReport):
    assert len(report.signatures) == 1, report.to_json()
    return report.signatures[0]


def pyhanko_level(path: Path) -> ModificationLevel | None:
    """What pyHanko's own structural diff says about the first signature."""
    with open(path, "rb") as f:
        emb = PdfFileReader(f).embedded_signatures[0]
        emb.compute_integrity_info(diff_policy=DEFAULT_DIFF_POLICY)
        return getattr(emb.diff_result, "modification_level", None)


@pytest.mark.parametrize("attack", ["overlay", "replace", "hide"])
def test_shadow_attack_caught_though_pyhanko_calls_it_form_filling(files, trust, attack):
    assert (
        pyhanko_level(files[attack]) is ModificationLevel.FORM_FILLING
    )  # the structural diff alone accepts it
    assert only(verify(files[f"{attack}-signed"], trust)).indication is Indication.TOTAL_PASSED
    s = only(verify(files[attack], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE", s.to_json()
    assert s.checks.unmodified is False
    assert s.checks.integrity is True and s.checks.signature_value is True
    headline = f"what the signed pages show was changed after signing (page 1: {attack}: "
    assert s.reasons[0].startswith(headline), s.reasons
    assert any(r.startswith(f"page 1: {attack}: ") for r in s.reasons), s.reasons
    assert not s.eto.supported_by_recognized_certificate


def test_appending_to_a_value_the_signer_saw_is_a_replace(files, trust):
    """ "100 HKD" -> "100 HKD 000": no ink the signer saw is lost, but the signed field shows more."""
    assert pyhanko_level(files["append"]) is ModificationLevel.FORM_FILLING
    s = only(verify(files["append"], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE", s.to_json()
    assert any(r.startswith("page 1: replace: ") for r in s.reasons), s.reasons


def test_regenerated_appearance_of_the_same_value_is_no_change(files, trust):
    """A form filler redrawing an unchanged field (here 0.3 pt to the right) changes nothing shown."""
    s = only(verify(files["regenerated"], trust))
    assert s.indication is Indication.TOTAL_PASSED and s.checks.unmodified is True, s.to_json()


def test_filling_a_blank_field_is_allowed(files, trust):
    assert pyhanko_level(files["fill"]) is ModificationLevel.FORM_FILLING
    s = only(verify(files["fill"], trust))
    assert s.indication is Indication.TOTAL_PASSED and s.sub_indication is None, s.to_json()
    assert s.checks.unmodified is True and s.modification_level == "FORM_FILLING"
    assert not any(r.startswith("page ") for r in s.reasons)


def test_ltv_updates_are_allowed(files, trust):
    report = verify(files["lta"], trust, offline=True)
    s = only(report)
    # DSS and VRI in one revision, the document timestamp in the next: only LTV updates.
    assert report.revisions >= 3 and s.coverage == "ENTIRE_REVISION"
    assert s.modification_level == "LTA_UPDATES"
    assert s.indication is Indication.TOTAL_PASSED and s.checks.unmodified is True, s.to_json()


def test_vri_pruned_and_updated_is_allowed(files, trust):
    with open(files["vri-pruned"], "rb") as f:
        emb = PdfFileReader(f).embedded_signatures[-1]
        emb.compute_integrity_info(diff_policy=DEFAULT_DIFF_POLICY)
        assert "VRI key" in str(emb.diff_result)  # pyHanko refuses any change to a VRI entry there at signing
    report = verify(files["vri-pruned"], trust, offline=True)
    s = report.signatures[-1]
    assert s.revision == emb.signed_revision and s.coverage == "ENTIRE_REVISION"
    assert s.modification_level == "LTA_UPDATES"
    assert s.indication is Indication.TOTAL_PASSED and s.checks.unmodified is True, s.to_json()


def test_vri_maintained_after_the_document_timestamp_keeps_b_lta(files, trust):
    report = verify(files["lta-vri-pruned"], trust, offline=True)
    s = only(report)
    assert s.indication is Indication.TOTAL_PASSED and s.pades_level == "B-LTA", s.to_json()
    assert s.modification_level == "LTA_UPDATES" and s.validation_process == "lta"


def test_content_replaced_reports_page_and_kind(files, trust):
    s = only(verify(files["content"], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE"
    assert s.checks.unmodified is False and s.modification_level == "OTHER"
    assert any(r.startswith("page 1: replace: ") for r in s.reasons), s.reasons


def test_diff_engine_failure_is_indeterminate(files, trust, monkeypatch, tmp_path):
    from signing.verify import diff_rules

    def broken(*args, **kwargs):
        raise KeyError("/Kids")

    monkeypatch.setattr(diff_rules.ALLOWED_CHANGES_POLICY, "review_file", broken)
    s = only(verify(files["fill"], trust))
    assert s.indication is Indication.INDETERMINATE and s.sub_indication == "GENERIC", s.to_json()
    assert s.reasons[0].startswith("modification analysis could not complete: KeyError")
    # what the cryptography says is still said
    assert s.checks.signature_value is True and s.checks.integrity is True
    assert s.checks.unmodified is False
    assert not s.eto.supported_by_recognized_certificate


def test_freeing_objects_nothing_uses_is_allowed(files, trust):
    assert pyhanko_level(files["freed"]) is None  # pyHanko's default policy refuses any freeing
    s = only(verify(files["freed"], trust))
    assert s.indication is Indication.TOTAL_PASSED and s.checks.unmodified is True, s.to_json()
    assert s.modification_level == "FORM_FILLING"


def test_freeing_what_the_page_shows_is_a_hide_attack(files, trust):
    s = only(verify(files["freed-in-use"], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE", s.to_json()
    assert s.checks.unmodified is False
    assert any(r.startswith("page 1: hide: ") for r in s.reasons), s.reasons


def test_structure_tree_update_is_allowed(files, trust):
    assert pyhanko_level(files["tagged"]) is None  # pyHanko's default policy calls it suspicious
    s = only(verify(files["tagged"], trust))
    assert s.indication is Indication.TOTAL_PASSED and s.checks.unmodified is True, s.to_json()
    assert s.modification_level == "LTA_UPDATES"


def test_unreadable_docmdp_fails_closed(files, trust):
    untouched = only(verify(files["bad-docmdp"], trust))
    assert untouched.indication is Indication.TOTAL_PASSED, untouched.to_json()
    assert untouched.docmdp == "NO_CHANGES"
    assert any("DocMDP permissions cannot be read" in r for r in untouched.reasons)
    # filling a blank field would pass without a DocMDP (test above); with an unreadable one it does not
    s = only(verify(files["bad-docmdp-filled"], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE", s.to_json()
    assert s.checks.unmodified is False and s.docmdp == "NO_CHANGES"


def test_renderer_failure_is_indeterminate_not_passed(files, trust, monkeypatch):
    from signing.verify import shadow

    async def stopped(request, timeout):
        return {"error": "the renderer stopped (exit status -9), probably at its memory or time limit"}

    monkeypatch.setattr(shadow, "_run_renderer", stopped)
    s = only(verify(files["fill"], trust))
    assert s.indication is Indication.INDETERMINATE and s.sub_indication == "GENERIC", s.to_json()
    assert s.reasons[0].startswith(
        "modification analysis could not complete: the pages that changed cannot be"
    )
    assert s.checks.signature_value is True and s.checks.unmodified is False


def test_renderer_child_answers_for_a_real_file(files):
    """The child process (not the in-process function) is what the verifier runs: it must work as a script."""
    from signing.verify import shadow

    with open(files["overlay"], "rb") as f:
        emb = PdfFileReader(f).embedded_signatures[0]
        end = int(emb.byte_range[2]) + int(emb.byte_range[3])
    answer = asyncio.run(shadow._run_renderer(shadow._request(str(files["overlay"]), end, {0: {}}), 30))
    assert "error" not in answer, answer
    (page,) = answer["pages"]
    assert page["overlay"] >= shadow.MIN_PIXELS and page["content"] == 0


def test_linearized_first_revision_is_the_signed_revision(files, trust):
    with open(files["linearized-then-signed"], "rb") as f:
        reader = PdfFileReader(f)
        first = reader.embedded_signatures[0]
        # pyHanko numbers the linearized file's two sections as two revisions and puts the signature in the
        # first, though the signed bytes end after the second
        assert reader.xrefs.total_revisions == 3 and first.signed_revision == 0
    alone = only(verify(files["linearized"], trust))
    assert alone.indication is Indication.TOTAL_PASSED and alone.coverage == "ENTIRE_FILE", alone.to_json()
    report = verify(files["linearized-then-signed"], trust)
    s = next(s for s in report.signatures if s.field == "Signature1")
    assert s.coverage == "ENTIRE_REVISION" and s.checks.byte_range is True, s.to_json()
    assert s.indication is Indication.TOTAL_PASSED and s.checks.unmodified is True, s.to_json()
    assert s.modification_level == "FORM_FILLING"


def test_comment_allowed_where_docmdp_allows_annotations(files, trust):
    assert pyhanko_level(files["annotate-comment"]) is None  # pyHanko has no rule for comments
    s = only(verify(files["annotate-comment"], trust))
    assert s.docmdp == "ANNOTATE" and s.modification_level == "ANNOTATIONS"
    assert s.indication is Indication.TOTAL_PASSED and s.checks.unmodified is True, s.to_json()


def test_comment_not_allowed_where_docmdp_allows_form_filling_only(files, trust):
    s = only(verify(files["fillforms-comment"], trust))
    assert s.docmdp == "FILL_FORMS"
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE", s.to_json()
    assert s.checks.unmodified is False


def test_comment_covering_signed_text_is_an_overlay_even_where_annotations_are_allowed(files, trust):
    s = only(verify(files["annotate-cover"], trust))
    assert s.docmdp == "ANNOTATE" and s.modification_level == "ANNOTATIONS"
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE", s.to_json()
    assert any(r.startswith("page 1: overlay: ") for r in s.reasons), s.reasons


def test_hide_and_replace_with_an_object_prepared_before_signing(files, trust):
    """The attacker's content is already in the signed revision; the later revision only points at it."""
    assert only(verify(files["hide-and-replace-signed"], trust)).indication is Indication.TOTAL_PASSED
    assert pyhanko_level(files["hide-and-replace"]) is ModificationLevel.FORM_FILLING  # accepted structurally
    s = only(verify(files["hide-and-replace"], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE", s.to_json()
    assert s.checks.unmodified is False
    assert any(r.startswith("page 1: overlay: ") for r in s.reasons), s.reasons
