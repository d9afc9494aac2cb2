import time

import pytest

from strop.verifiers.extract import extract_answer, extract_boxed, final_boxes, normalize_answer


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


# Several boxes: model outputs of each shape the final answer is written in.
@pytest.mark.parametrize(
    "text,expected",
    [
        # pairs of a Diophantine equation, boxed one by one and joined by "and" inside \text{}
        ("Checking both candidates in the original equation, the solutions are "
         "$\\boxed{(2, 2)} \\text{ and } \\boxed{(6, 2)}$.", ["(2, 2)", "(6, 2)"]),
        # a system of equations, each variable in its own box
        ("Substituting back gives y = 2, so the solution is $\\boxed{x = 1}, \\boxed{y = 2}$.", ["x = 1", "y = 2"]),
        # roots of a polynomial listed with commas and an Oxford "and"
        ("Hence the roots are \\boxed{-1}, \\boxed{2}, and \\boxed{5}.", ["-1", "2", "5"]),
        # variables named outside their boxes: the names are kept
        ("Therefore $a = \\boxed{3}$ and $b = \\boxed{-4}$.", ["a = 3", "b = -4"]),
        ("so \\(\\alpha = \\boxed{30^\\circ}\\) \\quad \\text{and} \\quad \\(\\beta = \\boxed{60^\\circ}\\)",
         ["\\alpha = 30^\\circ", "\\beta = 60^\\circ"]),
        # one display line per box
        ("The ordered pairs are:\n$$\\boxed{(1, 4)}$$\n$$\\boxed{(4, 1)}$$", ["(1, 4)", "(4, 1)"]),
        # "or" joins too: an equation's solutions, and a hedge alike (judged against the gold answer, not here)
        ("So $x = \\boxed{2}$ or $x = \\boxed{-3}$.", ["x = 2", "x = -3"]),
        ("I think it is \\boxed{4} or \\boxed{5}.", ["4", "5"]),
        # a draft, then prose, then the correction: only the last box
        ("At first I got \\boxed{12}. Wait, I forgot the carry; redoing it gives \\boxed{13}.", ["13"]),
        ("\\boxed{\\frac{1}{2}} and later \\boxed{3}", ["3"]),
        # an expression before "=" is not a name
        ("x + y = \\boxed{7}", ["7"]),
        ("\\boxed{5}", ["5"]),
        ("no box here", []),
    ],
)
def test_final_boxes_reads_a_run_of_boxes_as_one_list(text, expected):
    assert final_boxes(text) == expected


def test_extract_answer_reads_a_list_of_boxes_so_a_hedge_is_not_its_last_candidate():
    # Before, only the last box counted: "4 or 5" read as "5", right for a gold answer of 5.
    assert extract_answer("It is either \\boxed{4} or \\boxed{5}.") == "4, 5"
    assert extract_answer("The answers are \\boxed{1,000} and \\boxed{2.50}.") == "1000, 2.5"
    assert extract_answer("I got \\boxed{4}. No wait, recounting: \\boxed{5}.") == "5"


def test_a_long_run_of_boxes_is_read_in_linear_time():
    for text in ["\\boxed{1}, " * 200_000, ("\\boxed{" + "{" * 20 + "1" + "}" * 20 + "} and ") * 50_000]:
        t = time.perf_counter()
        boxes = final_boxes(text)
        assert boxes and len(boxes) < 100_000  # the scan covers only the last MAX_SCAN_CHARS characters
        assert time.perf_counter() - t < 20.0  # loose, for a loaded machine; a quadratic scan takes minutes
