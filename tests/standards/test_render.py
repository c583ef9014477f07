"""Rendering standards as prompt text."""

from __future__ import annotations

import pytest

from inspection.standards import render_clause, render_standard


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_render_states_every_clause_with_id_and_condition(bracket_standard, lang):
    text = render_standard(bracket_standard, lang)
    assert bracket_standard.version in text
    for clause in bracket_standard.clauses:
        line = next(line for line in text.splitlines() if f"[{clause.id}]" in line)
        assert clause.text.get(lang) in line
        for cond in clause.when:
            assert str(cond) in line


def test_languages_differ(bracket_standard):
    en, zh = (render_standard(bracket_standard, lang) for lang in ("en", "zh"))
    assert "scrap" in en and "报废" in zh and "scrap" not in zh


def test_clause_rendering(bracket_standard):
    line = render_clause(bracket_standard.clause("4.1.2"), "en")
    assert line.startswith(
        "[4.1.2] scratch in zone A when length_mm > 2 and length_mm <= 5 -> major"
    )


def test_unknown_language(bracket_standard):
    with pytest.raises(ValueError, match="unknown language"):
        render_standard(bracket_standard, "fr")
