"""One feature loop (apinet.features.iterate_features) behind evaluate_loader, the k-NN reference
and the mechanism statistics: all three read the same pooled features."""

from __future__ import annotations

import torch

from apinet.features import iterate_features
from apinet.mechanism import collect_features
from apinet.ood import pooled_features
from apinet.train import evaluate_loader


def test_the_three_readers_agree_with_the_model(tiny_apinet):
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(5, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 3, 4])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=2)
    with torch.no_grad():
        maps = tiny_apinet.forward_features(images)
        pooled = tiny_apinet.pool_features(maps)
        logits = tiny_apinet(images)
    batches = list(iterate_features(tiny_apinet, loader))
    assert [b.pooled.shape[0] for b in batches] == [2, 2, 1]
    assert all(not b.pooled.requires_grad for b in batches)
    torch.testing.assert_close(torch.cat([b.maps for b in batches]), maps)
    ood_pooled, ood_labels = pooled_features(tiny_apinet, loader)
    mech_pooled, mech_maps, mech_labels = collect_features(tiny_apinet, loader)
    result = evaluate_loader(tiny_apinet, loader, return_pooled=True)
    for got in (ood_pooled, mech_pooled, result["pooled"]):
        torch.testing.assert_close(got, pooled)
    assert torch.equal(ood_labels, labels) and torch.equal(mech_labels, labels) and torch.equal(result["target"], labels)
    torch.testing.assert_close(mech_maps, maps.half())
    assert torch.equal(result["pred"], logits.argmax(1))
    assert result["top1"] == float((logits.argmax(1) == labels).float().mean())
    assert not tiny_apinet.training  # evaluate_loader puts the model back as it found it
