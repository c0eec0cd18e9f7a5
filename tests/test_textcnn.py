"""Tests for the CPQS TextCNN: padding invariance, fast GEMM path == plain conv2d path, training."""

from __future__ import annotations

import io
import json

import pytest
import torch
import torch.nn.functional as F

from cpqs_bench.selectors.cpqs.textcnn import GOOD_CLASS, TextCNN, TextCNNConfig, collate

L, H = 3, 8  # small layer/hidden sizes keep these tests fast
SMALL = TextCNNConfig(num_layers=L, hidden_size=H, num_filters=16, fc_hidden=32)
TIGHT = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(autouse=True)
def _one_thread():
    """Other work shares this machine; one thread also makes fp32 reductions reproducible."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_model(cfg: TextCNNConfig = SMALL, seed: int = 0) -> TextCNN:
    torch.manual_seed(seed)
    return TextCNN(cfg).eval()


def random_rows(lengths: list[int], cfg: TextCNNConfig = SMALL, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [3.0 * torch.randn(n, cfg.num_layers, cfg.hidden_size, generator=gen) for n in lengths]


def forward_alone(model: TextCNN, row: torch.Tensor, *, reference: bool = False) -> torch.Tensor:
    fn = model.reference_forward if reference else model.forward
    return fn(row.unsqueeze(0), torch.tensor([row.shape[0]]))


# ---------------------------------------------------------------------------------- config


def test_config_round_trip_through_json():
    cfg = TextCNNConfig(num_layers=31, hidden_size=576, kernel_sizes=(2, 3), dropout=0.1)
    restored = TextCNNConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert restored == cfg
    assert restored.kernel_sizes == (2, 3)
    assert TextCNNConfig(num_layers=2, hidden_size=4).to_dict() == {
        "num_layers": 2,
        "hidden_size": 4,
        "kernel_sizes": [3, 4, 5],
        "num_filters": 256,
        "num_deep_convs": 2,
        "fc_hidden": 512,
        "dropout": 0.5,
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"num_layers": 0},
        {"hidden_size": -1},
        {"kernel_sizes": ()},
        {"kernel_sizes": (3, 3)},
        {"kernel_sizes": (0, 2)},
        {"dropout": 1.0},
        {"num_deep_convs": -1},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        TextCNNConfig(**{"num_layers": 2, "hidden_size": 4, **bad})


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="num_filtres"):
        TextCNNConfig.from_dict({"num_layers": 2, "hidden_size": 4, "num_filtres": 8})


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        SMALL.num_filters = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------------- structure


def test_parameter_layout_matches_official_module():
    """Names/shapes mirror the official DeepTextCNN; the two Conv1d layers are shared by branches."""
    model = make_model()
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    assert shapes["convs.0.weight"] == (16, L, 3, H)
    assert shapes["convs.2.weight"] == (16, L, 5, H)
    assert shapes["deep_convs.0.weight"] == (16, 16, 3)
    assert shapes["deep_convs.1.weight"] == (16, 16, 3)
    assert "deep_convs.2.weight" not in shapes  # one shared pair, not one pair per branch
    assert shapes["fc.0.weight"] == (32, 48)
    assert shapes["fc.3.weight"] == (2, 32)
    assert not any("cache" in name for name in shapes)


def test_shapes_and_score():
    model = make_model()
    x, lengths = collate(random_rows([7, 3, 12]))
    assert model(x, lengths).shape == (3, 2)
    model.train()
    scores = model.score(x, lengths)
    assert model.training  # score restores the mode it found
    assert scores.shape == (3,) and scores.dtype == torch.float32
    assert not scores.requires_grad
    assert torch.all((scores > 0) & (scores < 1))
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(x, lengths), dim=-1)[:, GOOD_CLASS]
    torch.testing.assert_close(scores, expected)


def test_collate_right_pads_with_zeros():
    rows = random_rows([2, 5, 1])
    x, lengths = collate(rows)
    assert x.shape == (3, 5, L, H)
    assert lengths.tolist() == [2, 5, 1] and lengths.dtype == torch.long
    torch.testing.assert_close(x[0, :2], rows[0])
    assert torch.all(x[0, 2:] == 0) and torch.all(x[2, 1:] == 0)


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [torch.zeros(2, L)],
        [torch.zeros(2, L, H), torch.zeros(2, L + 1, H)],
        [torch.zeros(2, L, H), torch.zeros(2, L, H, dtype=torch.bfloat16)],
        [torch.zeros(0, L, H)],
    ],
)
def test_collate_rejects_bad_input(rows):
    with pytest.raises(ValueError):
        collate(rows)


@pytest.mark.parametrize(
    ("x", "lengths"),
    [
        (torch.zeros(2, 4, L), torch.tensor([4, 4])),  # not 4-D
        (torch.zeros(2, 4, L, H + 1), torch.tensor([4, 4])),  # wrong hidden size
        (torch.zeros(2, 4, L, H), torch.tensor([4])),  # lengths size
        (torch.zeros(2, 4, L, H), torch.tensor([0, 4])),  # empty row
        (torch.zeros(2, 4, L, H), torch.tensor([5, 4])),  # longer than T
        (torch.zeros(2, 4, L, H), torch.tensor([4.0, 4.0])),  # float lengths
        (torch.zeros(2, 4, L, H, dtype=torch.long), torch.tensor([4, 4])),  # integer x
    ],
)
def test_forward_rejects_bad_input(x, lengths):
    model = make_model()
    with pytest.raises(ValueError):
        model(x, lengths)
    with pytest.raises(ValueError):
        model.reference_forward(x, lengths)


# ---------------------------------------------------------------------------------- padding


LENGTHS = [1, 2, 4, 5, 6, 23, 3, 11]


def test_batched_equals_each_row_alone():
    model = make_model()
    rows = random_rows(LENGTHS)
    x, lengths = collate(rows)
    with torch.no_grad():
        batched = model(x, lengths)
        batched_ref = model.reference_forward(x, lengths)
        for i, row in enumerate(rows):
            alone = forward_alone(model, row)
            torch.testing.assert_close(batched[i : i + 1], alone, **TIGHT)
            torch.testing.assert_close(batched_ref[i : i + 1], alone, **TIGHT)
            torch.testing.assert_close(forward_alone(model, row, reference=True), alone, **TIGHT)


def test_padding_content_is_ignored_but_would_matter_if_unmasked():
    """Garbage (incl. NaN) in the padding changes nothing; treating it as valid would."""
    model = make_model()
    rows = random_rows(LENGTHS)
    x, lengths = collate(rows)
    noisy = torch.randn(x.shape[0], x.shape[1] + 3, L, H) * 5.0
    for i, n in enumerate(LENGTHS):
        noisy[i, :n] = rows[i]
    nan_padded = noisy.clone()
    nan_padded[0, 1:] = float("nan")
    with torch.no_grad():
        clean = model(x, lengths)
        for fn in (model.forward, model.reference_forward):
            torch.testing.assert_close(fn(noisy, lengths), clean, **TIGHT)
            torch.testing.assert_close(fn(nan_padded, lengths), clean, **TIGHT)
        # Negative control: the same tensor read as full-length rows gives different logits.
        unmasked = model(noisy, torch.full_like(lengths, noisy.shape[1]))
    assert (unmasked[:-1] - clean[:-1]).abs().max() > 1e-3


def _official_forward(model, row):
    """The reference ``DeepTextCNN.forward`` (train_cnn.py), batch of one, (1, L, T, H) layout: each branch pads a
    sequence shorter than its own k to k."""
    import torch.nn.functional as Fn

    x = row.unsqueeze(0).permute(0, 2, 1, 3)
    pooled = []
    for conv, k in zip(model.convs, model.cfg.kernel_sizes):
        xp = Fn.pad(x, (0, 0, 0, k - x.size(2))) if x.size(2) < k else x
        out = Fn.relu(conv(xp)).squeeze(3)
        for deep in model.deep_convs:
            out = Fn.relu(deep(out))
        pooled.append(Fn.adaptive_max_pool1d(out, 1).squeeze(2))
    return model.fc(model.dropout(torch.cat(pooled, dim=1)))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_short_sequence_follows_the_reference_per_branch_padding(n):
    """A row shorter than a branch's k is padded to that k for that branch only, as the reference does."""
    model = make_model()
    (row,) = random_rows([n])
    with torch.no_grad():
        want = _official_forward(model, row)
        torch.testing.assert_close(forward_alone(model, row), want, **TIGHT)
        torch.testing.assert_close(forward_alone(model, row, reference=True), want, **TIGHT)
        x, lengths = collate([row, torch.randn(9, L, H)])  # batched with a longer row: same result
        torch.testing.assert_close(model(x, lengths)[:1], want, **TIGHT)
    if n < SMALL.max_kernel - 1:  # negative control: padding every branch to the largest kernel differs
        padded = torch.cat([row, torch.zeros(SMALL.max_kernel - n, L, H)])
        with torch.no_grad():
            assert (_official_forward(model, padded) - want).abs().max() > 1e-5


# ---------------------------------------------------------------------------------- fast path


def test_fast_path_matches_reference_fp32():
    model = make_model(TextCNNConfig(num_layers=L, hidden_size=H, kernel_sizes=(2, 3, 5, 7)))
    x, lengths = collate(random_rows([9, 1, 30, 7, 6]))
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths), model.reference_forward(x, lengths), **TIGHT)


def test_fast_path_matches_reference_without_deep_convs():
    model = make_model(TextCNNConfig(num_layers=L, hidden_size=H, num_deep_convs=0))
    x, lengths = collate(random_rows([9, 2, 6]))
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths), model.reference_forward(x, lengths), **TIGHT)


def _assert_bf16_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """bf16 has ~3 significant digits: compare against the spread of the fp32 logits."""
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    scale = want.abs().max().item()
    assert (got - want).abs().max().item() <= 0.05 * scale + 1e-4


def test_bf16_input_and_autocast_match_fp32_reference():
    model = make_model()
    x, lengths = collate(random_rows([9, 1, 30, 7]))
    with torch.no_grad():
        want = model.reference_forward(x, lengths)
        _assert_bf16_close(model(x.bfloat16(), lengths), want)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_out = model(x, lengths)
        _assert_bf16_close(autocast_out.float(), want)
    scores = model.score(x.bfloat16(), lengths)
    torch.testing.assert_close(scores, model.score(x, lengths), atol=0.02, rtol=0.0)


def test_scores_under_bf16_autocast_are_not_quantised():
    """The classifier head runs in fp32 under autocast: bf16 logits would give P(good) a few hundred possible
    values near 0.5, and a pool of similar answers would tie (ties are then broken by id at the top-k cut)."""
    model = make_model()
    rows = [0.05 * r for r in random_rows([12] * 200, seed=5)]  # similar inputs: logits in a narrow band
    x, lengths = collate(rows)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x, lengths)
        scores = model.score(x, lengths)
    assert logits.dtype == torch.float32
    assert len(set(scores.tolist())) == len(rows)
    torch.testing.assert_close(scores, model.score(x, lengths), atol=0.02, rtol=0.0)


def test_moderate_size_equality_smollm2_shape():
    """Real SmolLM2-135M channel/hidden sizes and paper filter counts, short sequences."""
    torch.manual_seed(0)
    cfg = TextCNNConfig(num_layers=31, hidden_size=576)
    model = TextCNN(cfg).eval()
    gen = torch.Generator().manual_seed(2)
    rows = [torch.randn(n, 31, 576, generator=gen) for n in (12, 7, 3)]
    x, lengths = collate(rows)
    with torch.no_grad():
        want = model.reference_forward(x, lengths)
        torch.testing.assert_close(model(x, lengths), want, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(forward_alone(model, rows[2]), want[2:3], rtol=1e-4, atol=1e-6)
        _assert_bf16_close(model(x.bfloat16(), lengths), want)


def test_tap_cache_is_reused_and_invalidated():
    model = make_model()
    other = make_model(seed=5)
    x, lengths = collate(random_rows([9, 4]))
    with torch.no_grad():
        assert model._tap_matrix(torch.float32) is model._tap_matrix(torch.float32)
        before = model(x, lengths)
        model.convs[1].weight.mul_(-2.0)  # in-place change, as an optimizer step makes
        after = model(x, lengths)
        torch.testing.assert_close(after, model.reference_forward(x, lengths), **TIGHT)
        assert (after - before).abs().max() > 1e-4
        model.load_state_dict(other.state_dict())
        torch.testing.assert_close(model(x, lengths), other(x, lengths), **TIGHT)


def test_whole_module_pickles_with_warm_cache():
    model = make_model()
    x, lengths = collate(random_rows([6, 3]))
    with torch.no_grad():
        want = model(x, lengths)  # fills the cache
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    restored = torch.load(buf, weights_only=False)
    with torch.no_grad():
        torch.testing.assert_close(restored(x, lengths), want, **TIGHT)


# ---------------------------------------------------------------------------------- training


def test_gradients_match_reference():
    cfg = TextCNNConfig(num_layers=L, hidden_size=H, num_filters=16, fc_hidden=32, dropout=0.0)
    model = make_model(cfg).train()
    x, lengths = collate(random_rows([9, 1, 4, 13]))
    target = torch.tensor([1, 0, 1, 0])
    grads = []
    for fn in (model.forward, model.reference_forward):
        model.zero_grad()
        F.cross_entropy(fn(x, lengths), target).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    fast, ref = grads
    assert fast.keys() == ref.keys()
    for name in fast:
        assert fast[name].abs().sum() > 0, f"no gradient reaches {name}"
        torch.testing.assert_close(fast[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_adam_learns_toy_separable_problem():
    """Good answers carry a positive shift in one layer channel; a few Adam steps should see it."""
    cfg = TextCNNConfig(num_layers=L, hidden_size=H, num_filters=8, fc_hidden=16, dropout=0.1)
    model = make_model(cfg).train()
    gen = torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 1] * 8)
    rows = []
    for label in labels.tolist():
        row = torch.randn(int(torch.randint(2, 15, (1,), generator=gen)), L, H, generator=gen)
        row[:, 1] += 1.5 if label == 1 else -1.5
        rows.append(row)
    x, lengths = collate(rows)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x, lengths), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    scores = model.score(x, lengths)
    assert torch.all(scores[labels == 1] > 0.5) and torch.all(scores[labels == 0] < 0.5)


def test_determinism_under_seed():
    first, second = make_model(seed=7), make_model(seed=7)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(first.convs[0].weight, make_model(seed=8).convs[0].weight)
    x, lengths = collate(random_rows([9, 3]))
    outs = []
    for model in (first, second):
        model.train()
        torch.manual_seed(11)  # same dropout masks
        outs.append(model(x, lengths))
    assert torch.equal(outs[0], outs[1])
