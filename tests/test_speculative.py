"""speculative.verify (issue 21): every output position distributed as the processed target
distribution (chi-square per position, fixed seeds, family false-alarm rate ALPHA, Bonferroni over
positions and cases), with one-hot drafts near and far from the target and with draft_probs, with
min-p, top-k and top-p active; greedy rows exact; batch invariance; rows with fewer drafts; K = 0
equal to sample(); invalid rows; identical backends; clear errors."""

import pytest
import scipy.stats
import torch

import minp_kernels
from minp_kernels.reference import minp_probs
from minp_kernels.speculative import verify

from helpers import DEVICE, over_backends

ALPHA = 1e-4
DRAWS = 6000
V, K = 10, 3


def target_rows(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(K + 1, V, generator=gen) * 1.3).to(DEVICE)


def processed(row, kwargs):
    return minp_probs(row, 0.05, 1.2, temperature_first=True, **kwargs).cpu().double()


def check_position(tokens, probs, tests):
    counts = torch.bincount(tokens.cpu(), minlength=V).double()
    support = probs > 0
    assert counts[~support].sum() == 0, (counts.tolist(), probs.tolist())
    if int(support.sum()) > 1 and counts.sum() > 0:
        expected = probs[support] / probs[support].sum() * counts.sum()
        p = scipy.stats.chisquare(counts[support], expected).pvalue
        assert p > ALPHA / tests, (p, counts.tolist(), probs.tolist())


FILTERS = [dict(), dict(top_k=6, top_p=0.9)]
DRAFTS = {"near": None, "far": None}


@pytest.mark.parametrize("filters", FILTERS, ids=["min-p", "min-p+top-k+top-p"])
@pytest.mark.parametrize("drafts", ["near", "far", "draft_probs"])
def test_every_position_has_the_target_distribution(filters, drafts):
    target = target_rows(1)
    logits = target.repeat(DRAWS, 1, 1)
    probs = [processed(target[j], filters) for j in range(K + 1)]
    if drafts == "near":  # one-hot drafts: the target's most likely tokens
        draft_ids, draft_probs = torch.stack([p.argmax() for p in probs[:K]]).repeat(DRAWS, 1).to(DEVICE), None
    elif drafts == "far":  # one-hot drafts the target rarely or never keeps
        draft_ids, draft_probs = torch.stack([p.argmin() for p in probs[:K]]).repeat(DRAWS, 1).to(DEVICE), None
    else:  # drafts drawn from a distribution q of their own, q handed over
        q = torch.softmax(torch.randn(K, V, generator=torch.Generator().manual_seed(9)), dim=-1)
        draft_ids = torch.multinomial(q, DRAWS, replacement=True, generator=torch.Generator().manual_seed(3)).T
        draft_ids, draft_probs = draft_ids.contiguous().to(DEVICE), q.repeat(DRAWS, 1, 1).to(DEVICE)
    out, accepted = verify(logits, draft_ids, 0.05, 1.2, draft_probs=draft_probs,
                           seed=torch.arange(DRAWS, device=DEVICE) + 7, **filters)
    assert ((out[:, :K] == draft_ids) | (torch.arange(K + 1, device=DEVICE)[None, :K] >= accepted[:, None])).all()
    for j in range(K + 1):
        emitted = accepted >= j
        check_position(out[emitted, j], probs[j], tests=(K + 1) * 6 * 2)
    if drafts == "far" and not filters:
        assert int(accepted.max()) <= 1  # a draft outside the kept set is never accepted


def test_greedy_rows_are_exact():
    target = target_rows(2)
    argmax = target.argmax(dim=-1)
    drafts = argmax[:K].clone()
    drafts[1] = (drafts[1] + 1) % V  # the second draft is wrong
    out, accepted = verify(target[None], drafts[None], 0.1, 0.0, seed=1)
    assert accepted.tolist() == [1]
    assert out.tolist() == [[int(argmax[0]), int(argmax[1]), -1, -1]]
    out, accepted = verify(target[None], argmax[None, :K], 0.1, 0.0, seed=1)
    assert accepted.tolist() == [K] and out.tolist() == [argmax.tolist()]


def test_batch_invariance_fewer_drafts_and_k_zero():
    targets = torch.stack([target_rows(s) for s in range(5)])
    drafts = targets[:, :K].argmax(dim=-1)
    seed = torch.arange(5, device=DEVICE) * 11
    count = torch.tensor([3, 0, 2, 1, 3], device=DEVICE)
    out, accepted = verify(targets, drafts, 0.05, 1.0, seed=seed, offset=4, num_draft_tokens=count)
    for row in range(5):
        alone, alone_accepted = verify(targets[row:row + 1], drafts[row:row + 1], 0.05, 1.0, seed=seed[row:row + 1],
                                       offset=4, num_draft_tokens=count[row:row + 1])
        assert torch.equal(out[row:row + 1], alone) and torch.equal(accepted[row:row + 1], alone_accepted)
    assert (accepted <= count).all()
    zero, none = verify(targets[:, :1], drafts[:, :0], 0.05, 1.0, seed=seed, offset=4)  # K = 0: the bonus only
    assert torch.equal(zero[:, 0], minp_kernels.sample(targets[:, 0], 0.05, 1.0, seed=seed, offset=4,
                                                       temperature_first=True, top_p_after_min_p=True))
    assert (none == 0).all()


@over_backends
def test_invalid_rows_and_backends(backend):
    targets = torch.stack([target_rows(s) for s in range(4)])
    drafts = targets[:, :K].argmax(dim=-1)
    p_base = torch.tensor([0.05, float("nan"), 0.05, 0.05], device=DEVICE)
    top_p = torch.tensor([0.9, 0.9, 0.0, 1.0], device=DEVICE)
    out, accepted = verify(targets, drafts, p_base, 1.0, top_p=top_p, seed=torch.arange(4, device=DEVICE),
                           backend=backend)
    assert (out[1:3] == -1).all() and (accepted[1:3] == 0).all()
    reference = verify(targets, drafts, p_base, 1.0, top_p=top_p, seed=torch.arange(4, device=DEVICE),
                       backend="torch")
    assert torch.equal(out, reference[0]) and torch.equal(accepted, reference[1])


def test_errors():
    logits = torch.randn(2, K + 1, V)
    drafts = torch.zeros(2, K, dtype=torch.int64)
    for args, kwargs, error, message in (
            ((torch.randn(2, V), drafts), {}, ValueError, r"target_logits: expected a \[B, K\+1, V\] tensor"),
            ((logits, drafts.int()), {}, TypeError, r"draft_token_ids: expected an int64 tensor"),
            ((logits, drafts[:, :2]), {}, ValueError, r"draft_token_ids: expected shape \[2, 3\]"),
            ((logits, drafts), dict(draft_probs=torch.ones(2, K, V + 1)), ValueError, r"draft_probs: expected"),
            ((logits, drafts), dict(num_draft_tokens=4), ValueError, r"num_draft_tokens: expected an int in \[0, 3\]")):
        with pytest.raises(error, match=message):
            verify(*args, 0.1, 1.0, **kwargs)


def test_strict_names_the_invalid_rows():
    targets = torch.randn(3, K + 1, V)
    drafts = torch.zeros(3, K, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"p_base: expected values \[0, 1.0\], got \[nan\] at rows \[1\]"):
        verify(targets, drafts, torch.tensor([0.1, float("nan"), 0.1]), 1.0, seed=1, strict=True)
    targets[2, 0] = float("-inf")
    with pytest.raises(ValueError, match=r"logits: expected at least one finite logit per row, got none in rows \[2\]"):
        verify(targets, drafts, 0.1, 1.0, seed=1, strict=True)
