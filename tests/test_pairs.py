"""Pair mining and the balanced batch sampler."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from apinet import BalancedBatchSampler, check_minable, mine_pairs


def brute_force_pairs(emb: torch.Tensor, labels: torch.Tensor):
    """The definition, one sample at a time: nearest by squared distance, lowest index on ties."""
    n = len(labels)
    intra, inter = [], []
    for i in range(n):
        best = {True: (float("inf"), -1), False: (float("inf"), -1)}
        for j in range(n):
            if j == i:
                continue
            d = float(((emb[i].double() - emb[j].double()) ** 2).sum())
            same = bool(labels[i] == labels[j])
            if d < best[same][0]:
                best[same] = (d, j)
        intra.append(best[True][1])
        inter.append(best[False][1])
    return intra, inter


def test_known_mining_result():
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [0.0, 2.0], [11.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    intra, inter = mine_pairs(emb, labels)
    # sample 0: same-class only 1; other class nearest is 3 (d=4) before 2 (d=100)
    assert intra.tolist() == [1, 0, 4, 2, 2]
    assert inter.tolist() == [3, 3, 1, 0, 1]


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_on_random_batches(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(6).repeat_interleave(4)[torch.randperm(24, generator=g)]
    emb = torch.randn(24, 32, generator=g)
    intra, inter = mine_pairs(emb, labels)
    ref_intra, ref_inter = brute_force_pairs(emb, labels)
    assert intra.tolist() == ref_intra
    assert inter.tolist() == ref_inter
    assert (labels[intra] == labels).all() and (labels[inter] != labels).all()
    assert (intra != torch.arange(24)).all()


def test_ties_go_to_lowest_index():
    # Integer coordinates: distances are exact, so the ties are real ties.
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    intra, inter = mine_pairs(emb, labels)
    ref_intra, ref_inter = brute_force_pairs(emb, labels)
    assert intra.tolist() == ref_intra == [1, 0, 0, 4, 3, 3]
    assert inter.tolist() == ref_inter == [3, 3, 3, 0, 0, 1]


def test_duplicate_embeddings_pair_with_each_other_not_self():
    emb = torch.ones(4, 3)
    labels = torch.tensor([0, 0, 1, 1])
    intra, inter = mine_pairs(emb, labels)
    assert intra.tolist() == [1, 0, 3, 2]
    assert inter.tolist() == [2, 2, 0, 0]


def test_single_member_class_names_the_label():
    emb = torch.randn(5, 4)
    labels = torch.tensor([3, 3, 7, 9, 9])
    with pytest.raises(ValueError, match=r"label\(s\) \[7\]"):
        mine_pairs(emb, labels)


@pytest.mark.parametrize(
    "labels, message",
    [([4, 4], "every sample has label 4"), ([1, 2], r"label\(s\) \[1, 2\]")],
)
def test_batch_of_two_cannot_form_both_pairs(labels, message):
    with pytest.raises(ValueError, match=message):
        mine_pairs(torch.randn(2, 8), torch.tensor(labels))


def test_smallest_valid_batch_is_two_classes_of_two():
    emb = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    intra, inter = mine_pairs(emb, torch.tensor([0, 0, 1, 1]))
    assert intra.tolist() == [1, 0, 3, 2] and inter.tolist() == [2, 2, 1, 1]


def test_mining_ignores_gradients_and_stays_on_device():
    emb = torch.randn(8, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    intra, inter = mine_pairs(emb, labels)
    assert intra.device == emb.device and intra.dtype == torch.long and not intra.requires_grad


def test_check_minable_on_cpu_labels():
    check_minable(torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        check_minable([5])


def _batches(sampler):
    return [list(b) for b in sampler]


def test_sampler_composition():
    labels = np.repeat(np.arange(10), 7)  # 10 classes x 7 images
    sampler = BalancedBatchSampler(labels, n_classes=3, n_samples=4, seed=1)
    batches = _batches(sampler)
    assert len(batches) == len(sampler) == 70 // 12
    for batch in batches:
        assert len(batch) == 12
        batch_labels = labels[batch]
        classes, counts = np.unique(batch_labels, return_counts=True)
        assert len(classes) == 3 and (counts == 4).all()  # no class repeated beyond its 4 samples
        assert len(set(batch)) == 12  # no image twice in a batch


def test_sampler_reshuffles_exhausted_pools_and_covers_every_image():
    labels = np.repeat(np.arange(4), 6)
    sampler = BalancedBatchSampler(labels, n_classes=2, n_samples=2, seed=0)
    seen = set()
    for _ in range(20):
        for batch in sampler:
            seen.update(batch)
    assert seen == set(range(24))
    # a pool of 6 gives 3 draws of 2, then must be reshuffled: cursors never run past the pool
    assert all(0 <= c <= 4 for c in sampler.cursor.values())


def test_sampler_is_seeded_and_epochs_differ():
    labels = np.repeat(np.arange(6), 8)
    a = BalancedBatchSampler(labels, 3, 2, seed=5)
    b = BalancedBatchSampler(labels, 3, 2, seed=5)
    first_a, first_b = _batches(a), _batches(b)
    assert first_a == first_b
    assert _batches(a) != first_a


def test_sampler_resume_mid_epoch_is_exact():
    labels = np.repeat(np.arange(5), 9)
    ref = BalancedBatchSampler(labels, 2, 3, seed=3)
    _batches(ref)  # epoch 0
    it = iter(ref)
    consumed = [next(it) for _ in range(3)]
    state = ref.state_dict(batches_consumed=3)
    rest_ref = list(it) + _batches(ref)
    resumed = BalancedBatchSampler(labels, 2, 3, seed=999)
    resumed.load_state_dict(state)
    assert _batches(resumed) + _batches(resumed) == rest_ref
    assert consumed  # the part before the save is not replayed


def test_sampler_rejects_small_classes():
    with pytest.raises(ValueError, match=r"fewer than n_samples=4 images: \[2\]"):
        BalancedBatchSampler([0] * 5 + [1] * 5 + [2] * 3, 2, 4)
    with pytest.raises(ValueError, match="only 3 classes"):
        BalancedBatchSampler(list(itertools.chain(*[[c] * 4 for c in range(3)])), 4, 2)
