import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from demasked_ros.core.certify import detect, recover, recover_with_margin
from demasked_ros.core.errors import CoreError


def test_majority_vote_and_unanimity_hand_case():
    branches = np.array([
        [[1, 2, 3], [4, 0, 7]],
        [[1, 2, 5], [4, 1, 7]],
        [[1, 3, 5], [4, 2, 7]],
        [[1, 3, 6], [4, 3, 7]],
        [[1, 2, 6], [4, 4, 7]],
    ])
    labels, certified = recover(branches)
    # column (0,1): 2,2,3,3,2 -> 2; (0,2): 3,5,5,6,6 -> tie 5/6 -> 5; (1,1): all differ -> 0.
    np.testing.assert_array_equal(labels, [[1, 2, 5], [4, 0, 7]])
    np.testing.assert_array_equal(certified, [[True, False, False], [True, False, True]])


def test_ties_go_to_the_smaller_class_index_whatever_the_branch_order():
    for order in ([9, 9, 4, 4, 1], [4, 9, 1, 4, 9], [1, 4, 4, 9, 9]):
        labels, certified = recover(np.array(order).reshape(5, 1, 1))
        assert labels[0, 0] == 4
        assert not certified[0, 0]


def test_single_branch_is_trivially_unanimous():
    labels, certified = recover(np.array([[[3, 1]]]))
    np.testing.assert_array_equal(labels, [[3, 1]])
    assert certified.all()


def test_detection_verifies_only_where_every_branch_equals_f():
    f = np.array([[1, 2], [3, 4]])
    branches = np.array([[[1, 2], [3, 0]], [[1, 9], [3, 4]], [[1, 2], [3, 4]]])
    np.testing.assert_array_equal(detect(f, branches), [[True, False], [True, False]])


def test_detection_unanimous_branches_that_disagree_with_f_are_not_verified():
    f = np.zeros((1, 1), dtype=np.int32)
    assert not detect(f, np.ones((3, 1, 1), dtype=np.int32))[0, 0]


@pytest.mark.parametrize("bad", [np.zeros((2, 2)), np.zeros((0, 2, 2), int), np.zeros((3, 2, 2), float)])
def test_bad_branch_arrays_raise(bad):
    with pytest.raises(CoreError):
        recover(bad)


def test_detect_shape_mismatch_raises():
    with pytest.raises(CoreError):
        detect(np.zeros((2, 3), int), np.zeros((3, 2, 2), int))


def reference_vote(column):
    values, counts = np.unique(column, return_counts=True)
    return values[counts == counts.max()].min()


@settings(max_examples=200, deadline=None)
@given(arrays(np.int16, st.tuples(st.integers(1, 9), st.integers(1, 4), st.integers(1, 4)),
              elements=st.integers(-3, 300)))
def test_property_vote_matches_reference(branches):
    labels, certified = recover(branches)
    for i in range(branches.shape[1]):
        for j in range(branches.shape[2]):
            column = branches[:, i, j]
            assert labels[i, j] == reference_vote(column)
            assert certified[i, j] == (len(set(column.tolist())) == 1)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(0, 8), st.data())
def test_property_unanimous_vote_survives_any_t_changed_branches(t, cls, data):
    """Theorem 1: K = 2T + 1 unanimous branches; an attacker rewrites any T of them."""
    k = 2 * t + 1
    branches = np.full((k, 1, 1), cls)
    changed = data.draw(st.lists(st.integers(0, k - 1), min_size=t, max_size=t, unique=True))
    for index in changed:
        branches[index, 0, 0] = data.draw(st.integers(0, 20))
    labels, _ = recover(branches)
    assert labels[0, 0] == cls


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3), st.data())
def test_property_margin_rule_is_unanimity_at_default_k(t, data):
    branches = data.draw(arrays(np.int8, (2 * t + 1, 3, 3), elements=st.integers(0, 3)))
    np.testing.assert_array_equal(recover_with_margin(branches, t)[1], recover(branches)[1])
    np.testing.assert_array_equal(recover_with_margin(branches, t)[0], recover(branches)[0])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3), st.integers(1, 12), st.data())
def test_property_margin_certificate_survives_any_t_changed_branches(t, k, data):
    """Brute-force Theorem 1 with a margin: no rewrite of t branches changes a certified vote."""
    branches = data.draw(arrays(np.int8, (k, 1, 1), elements=st.integers(0, 3)))
    labels, certified = recover_with_margin(branches, t)
    if certified[0, 0]:
        changed = data.draw(st.lists(st.integers(0, k - 1), max_size=t, unique=True))
        attacked = branches.copy()
        for index in changed:
            attacked[index, 0, 0] = data.draw(st.integers(0, 3))
        assert recover(attacked)[0][0, 0] == labels[0, 0]


def test_margin_hand_case():
    # 7 branches: 5 x class 2, 2 x class 1 -> margin 3: certified for t=1, not for t=2.
    branches = np.array([2, 2, 1, 2, 2, 1, 2]).reshape(7, 1, 1)
    assert recover_with_margin(branches, 1)[1][0, 0]
    assert not recover_with_margin(branches, 2)[1][0, 0]
    with pytest.raises(CoreError):
        recover_with_margin(branches, -1)
