import itertools

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


@pytest.mark.parametrize("bad", [np.zeros((2, 2)), np.zeros((0, 2, 2), int), np.zeros((3, 0, 2), int),
                                 np.zeros((3, 2, 0), int), np.zeros((3, 2, 2), float)])
def test_bad_branch_arrays_raise(bad):
    with pytest.raises(CoreError):
        recover(bad)
    with pytest.raises(CoreError):
        recover_with_margin(bad, 1)


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



# --- Decision boundaries (issue 13): hand cases the margin rule and the tie-break must get right. ---


@pytest.mark.parametrize(("votes", "t", "label", "certified"), [
    ([1, 1, 1, 0], 1, 1, False),                 # margin 2 = 2t: one flip gives a tie that goes to 0
    ([1, 1, 1, 1, 0], 1, 1, True),               # margin 3 = 2t + 1
    ([1, 1, 1, 0, 2], 1, 1, False),              # margin 2 against the best other class
    ([3, 3, 3, 3, 3, 1, 2], 2, 3, False),        # K = 7 > 2t + 1, margin 4 = 2t
    ([3, 3, 3, 3, 3, 3, 1], 2, 3, True),         # margin 5 = 2t + 1
    ([2, 2, 2, 2, 2, 2], 2, 2, True),            # unanimous, K = 6 > 2t: margin 6
    ([0, 4, 4, 4, 4, 4, 0, 4, 0], 1, 4, True),   # 6 vs 3: margin 3 = 2t + 1
    ([0, 4, 4, 4, 4, 0, 0, 4, 0], 1, 4, False),  # 5 vs 4: margin 1
])
def test_margin_boundary_hand_cases(votes, t, label, certified):
    branches = np.array(votes).reshape(len(votes), 1, 1)
    labels, cert = recover_with_margin(branches, t)
    assert labels[0, 0] == label
    assert bool(cert[0, 0]) is certified


def test_margin_exactly_2t_is_not_certified_and_the_flip_shows_why():
    """The issue's example: [1, 1, 1, 0] with t = 1 is not certified; one changed branch flips it."""
    branches = np.array([1, 1, 1, 0]).reshape(4, 1, 1)
    assert not recover_with_margin(branches, 1)[1][0, 0]
    flipped = branches.copy()
    flipped[0] = 0
    assert recover(flipped)[0][0, 0] == 0  # tie 2:2 goes to the smaller index


@pytest.mark.parametrize("t", [1, 2, 3])
def test_k_at_most_2t_never_certifies_even_when_unanimous(t):
    for k in range(1, 2 * t + 1):
        unanimous = np.full((k, 2, 3), 5)
        assert not recover_with_margin(unanimous, t)[1].any(), f"K={k}, t={t}"
        mixed = np.arange(k * 6).reshape(k, 2, 3) % 2
        assert not recover_with_margin(mixed, t)[1].any(), f"K={k}, t={t}"
    assert recover_with_margin(np.full((2 * t + 1, 2, 3), 5), t)[1].all()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.data())
def test_property_k_at_most_2t_never_certifies(t, data):
    k = data.draw(st.integers(1, 2 * t))
    branches = data.draw(arrays(np.int8, (k, 2, 2), elements=st.integers(0, 2)))
    assert not recover_with_margin(branches, t)[1].any()


@pytest.mark.parametrize("votes", [[0, 0, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0], [7, 3, 7, 3, 5, 5]])
def test_margin_ties_go_to_the_smaller_index_and_are_never_certified(votes):
    branches = np.array(votes).reshape(len(votes), 1, 1)
    for t in (0, 1):
        labels, certified = recover_with_margin(branches, t)
        assert labels[0, 0] == min(votes)
        assert not certified[0, 0]


def test_ties_in_a_larger_image_are_resolved_pixel_by_pixel():
    # Three pixels with ties between different pairs, one clear pixel, one unanimous pixel.
    branches = np.array([[4, 2, 9, 1, 6], [3, 2, 8, 1, 6], [4, 5, 9, 0, 6], [3, 5, 8, 1, 6]])[:, None, :]
    labels, certified = recover_with_margin(branches, 0)
    np.testing.assert_array_equal(labels, [[3, 2, 8, 1, 6]])
    np.testing.assert_array_equal(certified, [[False, False, False, True, True]])


@pytest.mark.parametrize("dissenter", [0, 2, 4])
def test_detection_with_one_dissenting_branch_is_not_verified(dissenter):
    f = np.full((3, 4), 2)
    branches = np.full((5, 3, 4), 2)
    branches[dissenter, 1, 2] = 7
    verified = detect(f, branches)
    expected = np.ones((3, 4), bool)
    expected[1, 2] = False
    np.testing.assert_array_equal(verified, expected)


def all_votes(k: int, classes: int) -> np.ndarray:
    """Every vote vector of K branches over ``classes`` labels, as a K x 1 x N label array."""
    grid = np.stack(np.meshgrid(*[np.arange(classes)] * k, indexing="ij"), axis=0)
    return grid.reshape(k, 1, -1)


@pytest.mark.parametrize(("k", "t"), [(3, 1), (4, 1), (5, 1), (6, 1), (5, 2), (6, 2), (4, 2)])
def test_exhaustive_margin_certificates_survive_every_rewrite_of_t_branches(k, t):
    """Every vote vector over 3 classes: no rewrite of any t branches changes a certified label."""
    votes = all_votes(k, 3)
    labels, certified = recover_with_margin(votes, t)
    assert certified.any() == (k > 2 * t)
    for index in range(votes.shape[2]):  # the rule itself, pixel by pixel: margin > 2t
        counts = np.sort(np.bincount(votes[:, 0, index], minlength=3))[::-1]
        assert certified[0, index] == (counts[0] - counts[1] > 2 * t), votes[:, 0, index]
        assert labels[0, index] == reference_vote(votes[:, 0, index])
    for changed in itertools.combinations(range(k), t):
        for values in itertools.product(range(3), repeat=t):
            attacked = votes.copy()
            attacked[list(changed)] = np.array(values)[:, None, None]
            broken = (recover(attacked)[0] != labels) & certified
            assert not broken.any(), f"K={k} t={t}: {votes[:, 0, np.argmax(broken)]}"


def test_exhaustive_vote_is_the_reference_vote():
    votes = all_votes(5, 4)
    labels, certified = recover(votes)
    for index in range(votes.shape[2]):
        column = votes[:, 0, index]
        assert labels[0, index] == reference_vote(column)
        assert certified[0, index] == (len(set(column.tolist())) == 1)


def test_error_messages_name_the_problem():
    with pytest.raises(CoreError, match=r"f\(x\) has shape \(2, 3\), branches have \(2, 2\)"):
        detect(np.zeros((2, 3), int), np.zeros((3, 2, 2), int))
    with pytest.raises(CoreError, match=r"f\(x\) labels must be integer class indices, got dtype float64"):
        detect(np.zeros((2, 2)), np.zeros((3, 2, 2), int))
    with pytest.raises(CoreError, match=r"branch labels must be K x H x W with K >= 1, got shape \(2, 2\)"):
        recover(np.zeros((2, 2), int))
    with pytest.raises(CoreError, match="branch labels must be integer class indices, got dtype float32"):
        recover_with_margin(np.zeros((3, 2, 2), np.float32), 1)
    with pytest.raises(CoreError, match="t must be >= 0, got -1"):
        recover_with_margin(np.zeros((3, 2, 2), int), -1)


@pytest.mark.parametrize(("votes", "winner"), [
    ([300, 300, -3], 300),          # labels far apart, one of them negative
    ([-3, -3, 300, 7], -3),
    ([0, 1000, 1000, 0, 1000], 1000),
    ([-7, 500, 500, -7], -7),       # tie across a wide range: the smaller index
])
def test_vote_over_wide_and_negative_label_ranges(votes, winner):
    branches = np.array(votes).reshape(len(votes), 1, 1)
    assert recover(branches)[0][0, 0] == winner
    assert recover_with_margin(branches, 0)[0][0, 0] == winner
