"""apinet.pairs.suggest_partners: the paper's pair construction for one image against a bank."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apinet.pairs import suggest_partners


BANK = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, 2.0], [0.0, 3.0]], dtype=np.float32)
LABELS = [0, 0, 0, 1, 1]


def test_bank_member_gets_nearest_same_and_other_label():
    choice = suggest_partners(BANK, LABELS, 0)
    assert (choice.intra, choice.inter) == (1, 3)
    assert choice.intra_distance == pytest.approx(1.0) and choice.inter_distance == pytest.approx(4.0)
    choice = suggest_partners(BANK, LABELS, 2)  # far right: intra is index 1 (distance 16), inter index 3 (29)
    assert (choice.intra, choice.inter) == (1, 3)
    assert choice.intra_distance == pytest.approx(16.0) and choice.inter_distance == pytest.approx(29.0)


def test_query_outside_the_bank_may_pair_with_any_bank_image():
    choice = suggest_partners(BANK, LABELS, 0, query=np.array([0.0, 2.9], np.float32), query_label=1)
    assert (choice.intra, choice.inter) == (4, 0)  # the query itself is never its own partner
    assert choice.intra_distance == pytest.approx(0.01, abs=1e-5)
    assert choice.inter_distance == pytest.approx(2.9 ** 2, rel=1e-5)


def test_missing_partner_is_none_with_nan_distance():
    choice = suggest_partners(BANK, LABELS, 0, query=np.array([9.0, 9.0], np.float32), query_label=7)
    assert choice.intra is None and math.isnan(choice.intra_distance)
    assert choice.inter == 2  # nearest of another label: (5, 0)
    lonely = suggest_partners(BANK[:2], [0, 1], 0)
    assert lonely.intra is None and lonely.inter == 1
    same = suggest_partners(BANK[:3], [0, 0, 0], 1)
    assert same.inter is None and math.isnan(same.inter_distance) and same.intra == 0


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        suggest_partners(BANK, LABELS[:3], 0)
    with pytest.raises(IndexError):
        suggest_partners(BANK, LABELS, 9)
    with pytest.raises(ValueError):
        suggest_partners(BANK, LABELS, 0, query=BANK[0])
