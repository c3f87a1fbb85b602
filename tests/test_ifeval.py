"""IFEval checkers: a response that follows and one that breaks each instruction type."""
import json

import pytest

from tunesift.data import DataError
from tunesift.evaluate.ifeval import CHECKS, load_ifeval, score_responses

CASES = [  # (type, kwargs, follows, breaks)
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "THIS is VERY good", "this is Very good"),
    ("change_case:english_capital", {}, "ALL CAPS HERE.", "Not all caps."),
    ("change_case:english_lowercase", {}, "all lower here.", "Not lower."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "Say hi. Hi!", "Hi! Say hi."),
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", "Only one answer."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", "Dear [name]."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\nP.S. Bye", "Body without it."),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Yes, sure."),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nfoo\nSection 2\nbar", "Section 1\nfoo"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", "* one\n* two\n* three"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*a* and *b*", "*a* only"),
    ("detectable_format:title", {}, "<<My Title>>\ntext", "My Title\ntext"),
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "Apple pie!", "Apple tart!"),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "A good day.", "A Bad day."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "cat, Cat", "one cat"),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "less than"}, "zz top", "zzz"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "First part.\n\nThen, the second.", "First part.\n\nNext, the second."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "One.\n***\nTwo.", "One.\n***\nTwo.\n***\nThree."),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, "One. Two.",
     "One. Two. Three. Four."),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two three four five",
     "one two"),
    ("punctuation:no_comma", {}, "No commas here.", "Yes, one."),
    ("startend:end_checker", {"end_phrase": "Is there anything else?"}, "Done. Is there anything else?", "Done."),
    ("startend:quotation", {}, '"quoted"', "not quoted"),
]


def test_every_type_has_a_case():
    assert {c[0] for c in CASES} | {"language:response_language"} == set(CHECKS)


@pytest.mark.parametrize("iid,kw,good,bad", CASES, ids=[c[0] for c in CASES])
def test_checker(iid, kw, good, bad):
    assert CHECKS[iid](good, kw) is True
    assert CHECKS[iid](bad, kw) is False


def test_scores_and_loose_variants():
    rows = [{"prompt": "p", "ids": ["punctuation:no_comma", "startend:quotation"], "kwargs": [{}, {}]},
            {"prompt": "p", "ids": ["startend:quotation"], "kwargs": [{}]}]
    # strict fails the quotation (a preamble line); loose drops the first line and passes
    res = score_responses(rows, ['Sure here it is\n"quoted text"', '"ok"'])
    assert res["prompt_strict"] == 0.5 and res["prompt_loose"] == 1.0
    assert res["instruction_strict"] == pytest.approx(2 / 3) and res["instruction_loose"] == 1.0


def test_real_file_loads_and_bad_lines_are_named(shared_data, tmp_path):
    rows = load_ifeval(shared_data / "eval" / "ifeval")
    assert len(rows) == 541
    res = score_responses(rows, [r["prompt"] for r in rows])   # the prompt as its own response
    assert 0 <= res["prompt_strict"] <= res["prompt_loose"] <= 1 and res["instructions"] > 500
    bad = tmp_path / "ifeval.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "instruction_id_list": ["nope:nope"], "kwargs": [{}]}) + "\n")
    with pytest.raises(DataError, match="line 1.*instruction_id_list"):
        load_ifeval(bad)
