"""lmcore.claim: the check every claim cell of the book makes."""
import math

import numpy as np
import pytest

import lmcore
from lmcore import ClaimError, claim


def test_a_number_inside_its_range_holds_and_says_so(capsys):
    claim("the gap is about 0.02 nats/char", 0.0202, lo=0.01, hi=0.03)
    out = capsys.readouterr().out
    assert "claim holds: the gap is about 0.02 nats/char" in out and "0.0202" in out and "[0.01, 0.03]" in out


@pytest.mark.parametrize("value, lo, hi", [(0.031, 0.01, 0.03), (0.009, 0.01, 0.03), (5.0, None, 4.9),
                                           (-1.0, 0.0, None), (math.nan, 0.0, 1.0)])
def test_a_number_outside_its_range_fails_with_claim_value_and_tolerance(value, lo, hi):
    with pytest.raises(ClaimError) as e:
        claim("some statement", value, lo=lo, hi=hi)
    msg = str(e.value)
    assert "some statement" in msg and "measured" in msg and "tolerance" in msg
    assert f"{value:.6g}" in msg


def test_bounds_are_inclusive():
    claim("at the edge", 1.0, lo=1.0, hi=1.0)


def test_conditions_need_to_be_true_and_report_the_measurement():
    claim("beam is shorter", True, measured="beam 25 chars, greedy 80")
    claim("numpy bools count as conditions", np.bool_(True))
    with pytest.raises(ClaimError, match="beam 90 chars, greedy 80"):
        claim("beam is shorter", False, measured="beam 90 chars, greedy 80")


def test_numpy_and_integer_values_are_accepted():
    claim("an int", 3, lo=3, hi=3)
    claim("a numpy float", np.float32(0.5), lo=0.0, hi=1.0)


@pytest.mark.parametrize("kwargs, exc", [
    (dict(statement="", value=1.0, lo=0.0), TypeError),
    (dict(statement="x", value=1.0), ValueError),                      # no tolerance
    (dict(statement="x", value=1.0, lo=2.0, hi=1.0), ValueError),      # empty range
    (dict(statement="x", value="1.0", lo=0.0), TypeError),
    (dict(statement="x", value=True, lo=0.0), ValueError),             # a bool takes no bounds
    (dict(statement="x", value=1.0, lo=math.nan), TypeError),
    (dict(statement="x", value=1.0, lo=0.0, measured=3), TypeError),
])
def test_bad_arguments_are_clear_errors(kwargs, exc):
    with pytest.raises(exc):
        claim(**kwargs)


def test_claim_is_public():
    assert lmcore.claim is claim and "claim" in lmcore.__all__
