"""The training loss (`gperc_core.train.loss.MaskedCrossEntropy`): equal to PyTorch's cross-entropy with
``ignore_index`` when per-query targets are scored on their labelled rows alone, gradients included;
zero (with zero gradients) when nothing is labelled; sums that add up over microbatches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gperc_core.train.loss import IGNORE_INDEX, MaskedCrossEntropy


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(6,), (4, 7)])
def test_equals_torch_cross_entropy_with_ignore_index(shape, smoothing):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, 11, generator=g, requires_grad=True)
    target = torch.randint(0, 11, shape, generator=g)
    target[torch.rand(shape, generator=g) < 0.6] = IGNORE_INDEX
    target.view(-1)[0] = 3  # at least one labelled target
    loss = MaskedCrossEntropy(smoothing)
    ours = loss.total(logits, target)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    ref = F.cross_entropy(logits.reshape(-1, 11), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum",
                          label_smoothing=smoothing)
    (grad_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(grad_ours, grad_ref)
    assert loss.mean(logits, target).item() == pytest.approx(ref.item() / loss.count(target), rel=1e-6)


def test_nothing_labelled_is_zero_with_zero_gradients():
    logits = torch.randn(2, 5, 7, requires_grad=True)
    target = torch.full((2, 5), IGNORE_INDEX)
    loss = MaskedCrossEntropy(0.1)
    total = loss.total(logits, target)
    total.backward()
    assert total.item() == 0.0 and loss.mean(logits, target).item() == 0.0
    assert torch.count_nonzero(logits.grad) == 0


def test_microbatch_sums_add_up_to_the_batch():
    logits, target = torch.randn(8, 6, 9), torch.randint(0, 9, (8, 6))
    target[:, ::2] = IGNORE_INDEX
    loss = MaskedCrossEntropy()
    loss.normaliser = loss.count(target)
    parts = sum(loss(logits[i:i + 2], target[i:i + 2]) for i in range(0, 8, 2))
    torch.testing.assert_close(parts, loss(logits, target))
