"""The fused torch modules compute exactly the seed document's equations (seqtool.reference)."""

import pytest
import torch
from torch import nn

from seqtool.models import SequenceModel, adaptive_cutoffs
from seqtool.reference import run_reference
from seqtool.schema import TokenModelConfig
from seqtool.tasks.language_model.config import LanguageModelModel
from seqtool.tasks.language_model.sampling import CellStepper, TokenSampler


@pytest.mark.parametrize(
    "module",
    [
        lambda: nn.RNN(5, 7, num_layers=2, batch_first=True, nonlinearity="tanh"),
        lambda: nn.RNN(5, 7, num_layers=2, batch_first=True, nonlinearity="relu"),
        lambda: nn.LSTM(5, 7, num_layers=2, batch_first=True),
        lambda: nn.GRU(5, 7, num_layers=2, batch_first=True),
    ],
    ids=["rnn-tanh", "rnn-relu", "lstm", "gru"],
)
def test_fused_module_computes_the_reference_equations(module):
    torch.manual_seed(0)
    fused = module().double()
    inputs = torch.randn(3, 11, 5, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = fused(inputs)
        actual = run_reference(fused, inputs)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequence_model_is_input_layer_then_the_reference_equations_then_the_head(kind):
    """SequenceModel itself, in eval mode, for token ids and for real-valued features."""
    torch.manual_seed(0)
    config = TokenModelConfig(type=kind, hidden_size=7, num_layers=2, embedding_size=5, dropout=0.3)
    tokens = torch.randint(0, 11, (3, 9))
    language_model = SequenceModel(config, output_size=11, vocab_size=11).double().eval()
    features = torch.randn(3, 9, 4, dtype=torch.float64)
    regressor = SequenceModel(config, output_size=2, input_size=4).double().eval()
    with torch.no_grad():
        logits, _ = language_model(tokens)
        embedded = language_model.embedding(tokens)
        torch.testing.assert_close(logits, language_model.head(run_reference(language_model.recurrent, embedded)))
        last, _ = regressor(features, last_only=True)
        torch.testing.assert_close(last, regressor.head(run_reference(regressor.recurrent, features)[:, -1]))


def test_reference_is_not_trivially_equal():
    """A wrong gate order must be caught: swap the LSTM forget and input gates and compare."""
    torch.manual_seed(0)
    fused = nn.LSTM(4, 6, batch_first=True).double()
    inputs = torch.randn(2, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = fused(inputs)
        w = fused.weight_ih_l0
        i, f, g, o = w.chunk(4)
        w.copy_(torch.cat([f, i, g, o]))
        actual = run_reference(fused, inputs)
    assert not torch.allclose(actual, expected, atol=1e-3)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_stepper_matches_the_fused_model_token_by_token(kind):
    torch.manual_seed(0)
    config = TokenModelConfig(type=kind, hidden_size=16, num_layers=2, dropout=0.0, embedding_size=8)
    model = SequenceModel(config, vocab_size=11, output_size=11).eval()
    tokens = torch.randint(0, 11, (1, 9))
    with torch.no_grad():
        expected, _ = model(tokens)
        _, state = model(tokens[:, :1])
        stepper = CellStepper(model)
        layer_states = stepper.split_state(state)
        for t in range(1, 9):
            logits = stepper.step(tokens[:, t], layer_states)
            assert torch.allclose(logits, expected[:, t], atol=1e-5)


def test_tied_weights_share_one_matrix():
    config = LanguageModelModel(hidden_size=8, embedding_size=8, tie_weights=True)
    model = SequenceModel(config, vocab_size=5, output_size=5)
    assert model.head.weight is model.embedding.weight


def test_adaptive_cutoffs_split_the_training_mass_at_80_and_95_percent():
    counts = [50, 30, 10, 5, 3, 1, 1]  # cumulative 50, 80, 90, 95, 98, 99, 100
    assert adaptive_cutoffs(counts) == [2, 4]
    assert adaptive_cutoffs([1, 1, 1]) == [1]  # too small for the 80%/95% split: one cluster


def test_adaptive_loss_is_the_mean_of_its_own_log_probabilities_and_the_stepper_agrees():
    torch.manual_seed(0)
    config = LanguageModelModel(hidden_size=16, num_layers=2, dropout=0.0, embedding_size=8, output="adaptive")
    model = SequenceModel(config, vocab_size=40, output_size=40, cutoffs=[5, 20]).eval()
    tokens = torch.randint(0, 40, (3, 10))
    with torch.no_grad():
        log_probs, _ = model(tokens[:, :-1])
        loss, _ = model(tokens[:, :-1], targets=tokens[:, 1:])
        assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 9), atol=1e-5)
        expected = -log_probs.gather(-1, tokens[:, 1:, None]).mean()
        assert torch.allclose(loss, expected, atol=1e-5)
        _, state = model(tokens[:, :1])
        stepper = CellStepper(model)
        layer_states = stepper.split_state(state)
        assert torch.allclose(stepper.step(tokens[:, 1], layer_states), log_probs[:, 1], atol=1e-5)


def test_gumbel_sampler_draws_from_the_softmax_at_the_temperature():
    scores = torch.tensor([[5.0, 1.0, 0.0, -1.0, 2.0]])  # id 0 is banned (<unk>) despite its score
    temperature = 0.7
    sampler = TokenSampler(1, 5, temperature, None, torch.Generator().manual_seed(0))
    draws = torch.stack([sampler(scores)[0] for _ in range(20000)])
    expected = torch.softmax(scores[0, 1:] / temperature, -1)
    observed = torch.bincount(draws, minlength=5).float() / len(draws)
    assert observed[0] == 0
    assert torch.allclose(observed[1:], expected, atol=0.012)


def test_gumbel_sampler_top_k_greedy_and_batches():
    scores = torch.tensor([[0.0, 3.0, 2.9, 1.0, -5.0], [0.0, -1.0, 0.5, 4.0, 4.1]])
    greedy = TokenSampler(2, 5, 0.0, None, torch.Generator().manual_seed(0))
    assert greedy(scores).tolist() == [1, 4]
    top2 = TokenSampler(2, 5, 5.0, 2, torch.Generator().manual_seed(0))  # hot: without top_k any id would come
    seen = {tuple(top2(scores).tolist()) for _ in range(300)}
    assert {a for a, _ in seen} == {1, 2} and {b for _, b in seen} == {3, 4}


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_unrolled_probe_computes_what_the_fused_module_does_and_exposes_each_h_t(kind):
    torch.manual_seed(0)
    config = TokenModelConfig(type=kind, hidden_size=6, num_layers=2, dropout=0.0, embedding_size=4)
    model = SequenceModel(config, vocab_size=9, output_size=9).eval()
    tokens = torch.randint(0, 9, (3, 7))
    fused, fused_state = model(tokens)
    model.probe = []
    probed, probed_state = model(tokens)
    assert torch.allclose(fused, probed, atol=1e-6)
    for a, b in zip(
        fused_state if kind == "lstm" else [fused_state], probed_state if kind == "lstm" else [probed_state], strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6)
    probed[:, -1].sum().backward()  # a loss on the last step only: earlier h_t matter through the recurrence
    states = [s if kind == "lstm" else (s,) for s in model.probe]
    assert len(states) == 7 and all(all(part.grad.norm() > 0 for part in state) for state in states)
