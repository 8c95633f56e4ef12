"""The two metrics of the NTM paper (ntm_repro.training.metrics) on a hand-made episode."""

from __future__ import annotations

import math

import pytest
import torch

from ntm_repro.models.population import Population

from ntm_repro.tasks.base import Episode
from ntm_repro.training.metrics import bit_errors, cost_nats, evaluate

LN3 = math.log(3)  # sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4

# Batch 2, 2 steps, 2 output bits. BCE(x, y) = log(1 + e^x) - y x.
#   logit ln 3 (p = 3/4): target 1 -> -ln(3/4) = ln(4/3); target 0 -> -ln(1/4) = ln 4
#   logit -ln 3 (p = 1/4): target 0 -> ln(4/3)
#   logit 0 (p = 1/2): either target -> ln 2; thresholded at 0.5 it predicts 0
#
# seq 0, t0 (mask 0): logits [5, -5], targets [0, 1]: large cost, 2 wrong bits -- NOT counted
# seq 0, t1 (mask 1): logits [0, ln 3], targets [1, 1]: ln 2 + ln(4/3); bit 0 wrong (1 error)
# seq 1, t0 (mask 1): logits [ln 3, ln 3], targets [0, 1]: ln 4 + ln(4/3); bit 0 wrong (1 error)
# seq 1, t1 (mask 1): logits [-ln 3, 0], targets [0, 0]: ln(4/3) + ln 2; no error
#
# cost = (2 ln 2 + ln 4 + 3 ln(4/3)) / 2 = 2 ln 2 + 1.5 ln(4/3) = 1.3862944 + 0.4315231 = 1.8178175 nats
# bit errors = (1 + 1 + 0) / 2 = 1.0 per sequence
LOGITS = torch.tensor(
    [
        [[5.0, -5.0], [0.0, LN3]],
        [[LN3, LN3], [-LN3, 0.0]],
    ]
)
EPISODE = Episode(
    inputs=torch.zeros(2, 2, 3),
    targets=torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 0.0]]]),
    mask=torch.tensor([[0.0, 1.0], [1.0, 1.0]]),
)
COST_NATS = 2 * math.log(2) + 1.5 * math.log(4 / 3)


def test_cost_nats_by_hand():
    assert COST_NATS == pytest.approx(1.8178175, abs=1e-7)
    assert cost_nats(LOGITS, EPISODE).item() == pytest.approx(COST_NATS, rel=1e-6)


def test_cost_nats_ignores_unmasked_steps():
    # changing the logits on the masked-out step changes nothing
    other = LOGITS.clone()
    other[0, 0] = torch.tensor([-30.0, 30.0])
    assert cost_nats(other, EPISODE).item() == pytest.approx(COST_NATS, rel=1e-6)


def test_cost_nats_divides_by_batch_not_by_bits():
    # the same episode twice: same per-sequence cost
    doubled = Episode(*(torch.cat([t, t]) for t in EPISODE))
    assert cost_nats(torch.cat([LOGITS, LOGITS]), doubled).item() == pytest.approx(COST_NATS, rel=1e-6)


def test_cost_nats_is_differentiable():
    logits = LOGITS.clone().requires_grad_()
    cost_nats(logits, EPISODE).backward()
    # d/dx BCE = sigmoid(x) - y, times mask, divided by the batch (2); zero on the masked step
    expected = (torch.sigmoid(LOGITS) - EPISODE.targets) * EPISODE.mask.unsqueeze(-1) / 2
    torch.testing.assert_close(logits.grad, expected)
    assert torch.equal(logits.grad[0, 0], torch.zeros(2))


def test_bit_errors_by_hand():
    assert bit_errors(LOGITS, EPISODE).item() == pytest.approx(1.0)


def test_bit_errors_of_some_channels_by_hand():
    # both scored errors are on bit 0 (seq 0 t1, seq 1 t0); the masked step's bit-1 error is not scored
    assert bit_errors(LOGITS, EPISODE, (0, 1)).item() == pytest.approx(1.0)
    assert bit_errors(LOGITS, EPISODE, (1, 2)).item() == 0.0
    assert bit_errors(LOGITS, EPISODE._replace(mask=torch.ones(2, 2)), (1, 2)).item() == pytest.approx(0.5)


def test_bit_errors_only_where_mask_is_one():
    # the masked-out step has 2 wrong bits; unmasking it adds 2 errors to sequence 0 -> (3 + 1) / 2
    unmasked = EPISODE._replace(mask=torch.ones(2, 2))
    assert bit_errors(LOGITS, unmasked).item() == pytest.approx(2.0)
    nothing_scored = EPISODE._replace(mask=torch.zeros(2, 2))
    assert bit_errors(LOGITS, nothing_scored).item() == 0.0
    assert cost_nats(LOGITS, nothing_scored).item() == 0.0


def test_perfect_prediction_has_no_errors():
    logits = (EPISODE.targets * 2 - 1) * 10  # +10 where the target is 1, -10 where 0
    assert bit_errors(logits, EPISODE).item() == 0.0
    assert cost_nats(logits, EPISODE).item() < 1e-3


def test_evaluate_reports_bits_and_errors():
    # cost in bits = nats / ln 2 = 2 + 1.5 log2(4/3) = 2 + 1.5 * 0.4150375 = 2.6225562
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def forward(self, inputs):
            return LOGITS + self.dummy

    model = Population([Fixed()])
    model.train()
    (result,) = evaluate(model, [EPISODE, EPISODE], scored_apart={"first": (0, 1), "second": (1, 2)})
    assert result["cost_bits"] == pytest.approx(2.6225562, abs=1e-6)
    assert result["bit_errors"] == pytest.approx(1.0)
    assert result["first_bit_errors"] == pytest.approx(1.0) and result["second_bit_errors"] == 0.0
    assert model.training  # restored


def test_a_large_held_out_set_is_evaluated_in_pieces_with_the_same_figures(monkeypatch):
    """The fused engine keeps every step's memory, so a held-out set of 1,000 long sequences
    must not go through in one pass; pieces of rows give the whole set's means."""
    from ntm_repro.training import metrics

    torch.manual_seed(0)
    passes = []

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)

        def forward(self, inputs):
            passes.append(inputs.shape[0])
            return 3 * self.linear(inputs)

    model = Population([Recording()])
    episode = Episode(torch.randn(10, 7, 3), (torch.rand(10, 7, 2) > 0.5).float(), (torch.rand(10, 7) > 0.3).float())
    reference = lambda episode: {"optimal_cost_bits": float(episode.inputs.shape[0])}  # noqa: E731 - of the whole episode
    (whole,) = evaluate(model, [episode], reference, scored_apart={"first": (0, 1)})
    assert passes == [10]
    monkeypatch.setattr(metrics, "EVAL_SEQUENCE_STEPS", 3 * 7)  # three sequences of 7 steps per pass
    passes.clear()
    (pieces,) = evaluate(model, [episode], reference, scored_apart={"first": (0, 1)})
    assert passes == [3, 3, 3, 1]
    assert list(pieces) == list(whole) == ["cost_bits", "bit_errors", "optimal_cost_bits", "first_bit_errors"]
    assert pieces == pytest.approx(whole, rel=1e-6) and pieces["optimal_cost_bits"] == 10
    assert metrics.row_chunks(4, 50, 5, budget=100) == [slice(i, i + 1) for i in range(4)]  # one sequence at the least
