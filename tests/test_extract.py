import time

import pytest

from strop.verifiers.extract import extract_answer, extract_boxed, normalize_answer


@pytest.mark.parametrize(
    "text,expected",
    [
        ("17 + 25 = 42", "42"),
        ("So the answer is \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}} and later \\boxed{3}", "3"),
        ("The answer is: 1,234.", "1234"),
        ("Final answer: -7.50", "-7.5"),
        ("We get 3 apples, then 5, so the answer is 8 apples", "8"),
        ("\\boxed{x^{2}+1}", "x^{2}+1"),
        ("no numbers here", None),
        ("\\boxed{unclosed 5", "5"),
        ("", None),
    ],
)
def test_extract_answer_table(text, expected):
    assert extract_answer(text) == expected


def test_extract_boxed_nested_braces():
    assert extract_boxed("a \\boxed{\\sqrt{\\frac{a}{b}}} b") == "\\sqrt{\\frac{a}{b}}"


def test_normalize_numbers():
    assert normalize_answer(" $1,000.00 ") == "1000" and normalize_answer("-0.0") == "0"


def test_hostile_inputs_end_quickly():
    for text in ["9" * 10_000_000, "{" * 1_000_000 + "\\boxed{" * 100_000, "\\boxed{" + "{" * 500_000]:
        t = time.perf_counter()
        extract_answer(text)
        # Linear-time parsing takes well under a second; a backtracking regex would take hours.
        # The bound is loose so that a loaded CI machine cannot fail it.
        assert time.perf_counter() - t < 20.0
