"""The student core: losses, model build/predict/train helpers, and export/metadata round-trip.

Uses a tiny random BERT and a WordLevel tokenizer built locally in a temp dir (no hub).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from labelmill.student.export import export_student, load_student_metadata
from labelmill.student.losses import asymmetric_loss, soft_bce_loss
from labelmill.student.model import (
    HEAD_PREFIX,
    build_student,
    embed_batches,
    fit_linear_head,
    load_pooled_classifier,
    predict_proba,
    tokenize_batch,
    train_epoch,
)

LABELS = {0: "sports", 1: "finance"}
SPORTS = ["the team won the match", "a great goal in the game", "the player scored twice"]
FINANCE = ["the bank raised rates", "stock prices fell today", "the market lost money"]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PreTrainedTokenizerFast]:
    """A tiny random BERT + WordLevel tokenizer saved to a local dir."""
    path = tmp_path_factory.mktemp("tiny-bert")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(SPORTS + FINANCE, trainers.WordLevelTrainer(special_tokens=specials))
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", raw.token_to_id("[CLS]")), ("[SEP]", raw.token_to_id("[SEP]"))],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path, tokenizer


@pytest.fixture
def student(backbone: tuple[Path, PreTrainedTokenizerFast]) -> PreTrainedModel:
    torch.manual_seed(1)
    return build_student(str(backbone[0]), 2, LABELS)


# ---------------------------------------------------------------- losses


def test_soft_bce_hand_computed() -> None:
    # logits [0, ln 3] -> p = [0.5, 0.75]; targets [1, 0.5]
    # elem0 = -ln 0.5 = ln 2 = 0.693147
    # elem1 = -(0.5 ln 0.75 + 0.5 ln 0.25) = -0.5 ln 0.1875 = 0.836988
    # mean over K=2 -> (0.693147 + 0.836988) / 2 = 0.765068
    logits = torch.tensor([[0.0, math.log(3.0)]])
    targets = torch.tensor([[1.0, 0.5]])
    expected = (math.log(2.0) - 0.5 * math.log(0.1875)) / 2
    assert soft_bce_loss(logits, targets).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.765068, abs=1e-6)


def test_asymmetric_hand_computed() -> None:
    # gamma_pos=0, gamma_neg=4, clip=0.05; logits [0, ln 3] -> p = [0.5, 0.75]; targets [1, 0.5]
    # elem0: y=1 -> -ln 0.5 = 0.693147 (negative part has weight 1-y = 0)
    # elem1: positive 0.5 * -ln 0.75 = 0.143841
    #        negative p_m = 0.75 - 0.05 = 0.70; 0.5 * 0.70**4 * -ln(1 - 0.70)
    #        = 0.5 * 0.2401 * 1.203973 = 0.144537 -> elem1 = 0.288378
    # mean -> (0.693147 + 0.288378) / 2 = 0.490763
    logits = torch.tensor([[0.0, math.log(3.0)]])
    targets = torch.tensor([[1.0, 0.5]])
    expected = (math.log(2.0) + 0.5 * -math.log(0.75) + 0.5 * 0.7**4 * -math.log(0.3)) / 2
    assert expected == pytest.approx(0.490763, abs=1e-6)
    assert asymmetric_loss(logits, targets).item() == pytest.approx(expected, abs=1e-6)


def test_row_weights_weighted_mean() -> None:
    logits = torch.tensor([[2.0, -1.0], [-3.0, 0.5]])
    targets = torch.tensor([[0.0, 1.0], [0.2, 0.9]])
    row0 = soft_bce_loss(logits[:1], targets[:1]).item()
    row1 = soft_bce_loss(logits[1:], targets[1:]).item()
    assert row0 != pytest.approx(row1)
    for loss_fn in (soft_bce_loss, asymmetric_loss):
        unweighted = loss_fn(logits, targets).item()
        uniform = loss_fn(logits, targets, torch.tensor([3.0, 3.0])).item()
        assert uniform == pytest.approx(unweighted, abs=1e-6)
        only0 = loss_fn(logits, targets, torch.tensor([1.0, 0.0])).item()
        assert only0 == pytest.approx(loss_fn(logits[:1], targets[:1]).item(), abs=1e-6)
    weighted = soft_bce_loss(logits, targets, torch.tensor([1.0, 3.0])).item()
    assert weighted == pytest.approx((row0 + 3 * row1) / 4, abs=1e-6)


def test_asymmetric_reduces_to_bce() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 3) * 4
    targets = torch.rand(5, 3)
    weights = torch.rand(5) + 0.1
    asl = asymmetric_loss(logits, targets, weights, gamma_pos=0.0, gamma_neg=0.0, clip=0.0)
    assert asl.item() == pytest.approx(soft_bce_loss(logits, targets, weights).item(), abs=1e-6)
    # the defaults down-weight easy negatives, so ASL is smaller than BCE on negatives
    neg = torch.zeros(5, 3)
    assert asymmetric_loss(logits, neg).item() < soft_bce_loss(logits, neg).item()


def test_asymmetric_gradients_finite() -> None:
    logits = torch.tensor([[-30.0, 30.0, 0.0]], requires_grad=True)
    asymmetric_loss(logits, torch.tensor([[0.0, 1.0, 0.3]]), gamma_neg=0.5).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    ("logits", "targets", "weights", "match"),
    [
        ([[0.0, 1.0]], torch.zeros(1, 2), None, "logits must be a floating-point"),
        (torch.zeros(2, dtype=torch.long), torch.zeros(2), None, "floating-point"),
        (torch.zeros(3), torch.zeros(3), None, r"shape \(N, K\).*\(3,\)"),
        (torch.zeros(0, 2), torch.zeros(0, 2), None, r"got \(0, 2\)"),
        (torch.zeros(1, 2), [[0.0, 1.0]], None, "targets must be a torch.Tensor"),
        (torch.zeros(1, 2), torch.zeros(1, 3), None, r"targets shape \(1, 3\)"),
        (torch.zeros(1, 2), torch.tensor([[0.0, 1.5]]), None, "in \\[0, 1\\], got 1.5"),
        (torch.zeros(1, 2), torch.tensor([[0.0, float("nan")]]), None, "got nan"),
        (torch.zeros(1, 2), torch.zeros(1, 2), [1.0], "row_weights must be a torch.Tensor"),
        (torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(2), r"shape \(1,\), got \(2,\)"),
        (torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([1.0, -1.0]), ">= 0, got -1.0"),
        (torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([float("inf")]), "finite"),
        (torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2), "positive sum, got 0.0"),
    ],
)
def test_loss_input_errors(logits: object, targets: object, weights: object, match: str) -> None:
    for loss_fn in (soft_bce_loss, asymmetric_loss):
        with pytest.raises(ValueError, match=match):
            loss_fn(logits, targets, weights)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma_pos": -1.0}, "gamma_pos must be a finite number >= 0, got -1.0"),
        ({"gamma_neg": float("inf")}, "gamma_neg .* got inf"),
        ({"clip": 1.0}, r"clip must lie in \[0, 1\), got 1.0"),
        ({"clip": -0.1}, "got -0.1"),
        ({"eps": 0.0}, "eps must lie"),
    ],
)
def test_asymmetric_hyperparameter_errors(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        asymmetric_loss(torch.zeros(1, 2), torch.zeros(1, 2), **kwargs)


# ---------------------------------------------------------------- model


def test_build_student_config(student: PreTrainedModel) -> None:
    assert student.config.problem_type == "multi_label_classification"
    assert student.config.num_labels == 2
    assert student.config.id2label == LABELS
    assert student.config.label2id == {"sports": 0, "finance": 1}


def test_build_student_errors(
    backbone: tuple[Path, PreTrainedTokenizerFast], tmp_path: Path
) -> None:
    path = str(backbone[0])
    with pytest.raises(ValueError, match=r"existing local directory, got .*nope"):
        build_student(str(tmp_path / "nope"), 2, LABELS)
    with pytest.raises(ValueError, match="num_labels must be an int >= 1, got 0"):
        build_student(path, 0, {})
    with pytest.raises(ValueError, match=r"keys must be exactly 0..2, got \[0, 1\]"):
        build_student(path, 3, LABELS)
    with pytest.raises(ValueError, match="distinct non-empty str, got \\['a', 'a'\\]"):
        build_student(path, 2, {0: "a", 1: "a"})


def test_tokenize_and_predict(
    student: PreTrainedModel, backbone: tuple[Path, PreTrainedTokenizerFast]
) -> None:
    tokenizer = backbone[1]
    batch = tokenize_batch(tokenizer, ["the team won", "a"], max_length=4)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 4)
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0]
    texts = SPORTS + FINANCE
    student.train()
    probs = predict_proba(student, tokenizer, texts, batch_size=4, max_length=16)
    assert student.training  # mode restored
    assert probs.shape == (6, 2) and probs.dtype == np.float32
    assert ((probs > 0) & (probs < 1)).all()
    one_by_one = predict_proba(student, tokenizer, texts, batch_size=1, max_length=16)
    np.testing.assert_allclose(probs, one_by_one, atol=1e-5)
    assert predict_proba(student, tokenizer, [], batch_size=2, max_length=8).shape == (0, 2)


def test_tokenize_and_predict_errors(
    student: PreTrainedModel, backbone: tuple[Path, PreTrainedTokenizerFast]
) -> None:
    tokenizer = backbone[1]
    with pytest.raises(ValueError, match="non-empty, got an empty list"):
        tokenize_batch(tokenizer, [], 8)
    with pytest.raises(ValueError, match="texts must be a list of str, got str"):
        tokenize_batch(tokenizer, "oops", 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"texts\[1\] must be a str, got int"):
        predict_proba(student, tokenizer, ["a", 3], 2, 8)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_length must be an int >= 1, got 0"):
        tokenize_batch(tokenizer, ["a"], 0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        predict_proba(student, tokenizer, ["a"], 0, 8)
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        tokenize_batch(no_pad, ["a"], 8)


def _toy_batches(tokenizer: PreTrainedTokenizerFast) -> list[dict[str, torch.Tensor]]:
    """Two batches of 3 rows, each mixing both classes (sports -> [1, 0], finance -> [0, 1])."""
    texts = [SPORTS[0], FINANCE[0], SPORTS[1], FINANCE[1], SPORTS[2], FINANCE[2]]
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 3)
    enc = tokenize_batch(tokenizer, texts, max_length=16)
    weights = torch.ones(6)
    return [
        {
            **{k: v[i : i + 3] for k, v in enc.items()},
            "targets": targets[i : i + 3],
            "weights": weights[i : i + 3],
        }
        for i in (0, 3)
    ]


def test_train_epoch_reduces_loss(
    student: PreTrainedModel, backbone: tuple[Path, PreTrainedTokenizerFast]
) -> None:
    batches = _toy_batches(backbone[1])
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    losses = [train_epoch(student, batches, optimizer, soft_bce_loss) for _ in range(16)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0]
    probs = predict_proba(student, backbone[1], SPORTS + FINANCE, 6, 16)
    assert (probs[:3, 0] > probs[:3, 1]).all() and (probs[3:, 1] > probs[3:, 0]).all()
    asl = train_epoch(student, batches, optimizer, asymmetric_loss)
    assert math.isfinite(asl)


def test_train_epoch_errors(
    student: PreTrainedModel, backbone: tuple[Path, PreTrainedTokenizerFast]
) -> None:
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="at least one non-empty batch, got none"):
        train_epoch(student, [], optimizer, soft_bce_loss)
    with pytest.raises(ValueError, match="batch 0 must be a mapping, got list"):
        train_epoch(student, [[1, 2]], optimizer, soft_bce_loss)  # type: ignore[list-item]
    batch = _toy_batches(backbone[1])[0]
    del batch["targets"]
    with pytest.raises(ValueError, match=r"lacks keys \['targets'\]"):
        train_epoch(student, [batch], optimizer, soft_bce_loss)


# ---------------------------------------------------------------- export


def _export(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, out: Path, **kw: object
) -> Path:
    args: dict[str, object] = {
        "taxonomy_names": ["sports", "finance"],
        "taxonomy_version": "abc123",
        "thresholds": np.array([0.4, 0.6]),
        "lineage": {"run_id": "r1", "teachers": ["tiny-random-llama"]},
        "metrics": {"micro_f1": 0.75, "macro_f1": 0.5},
    }
    args.update(kw)
    return export_student(model, tokenizer, out, **args)  # type: ignore[arg-type]


def test_export_roundtrip(
    student: PreTrainedModel, backbone: tuple[Path, PreTrainedTokenizerFast], tmp_path: Path
) -> None:
    tokenizer = backbone[1]
    out = _export(student, tokenizer, tmp_path / "student")
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in files and "labelmill.json" in files and "README.md" in files
    assert not [f for f in files if not f.endswith((".json", ".safetensors", ".md", ".txt"))]
    assert not [p for p in tmp_path.iterdir() if p.name != "student"]  # temp dir cleaned up
    reloaded = load_pooled_classifier(out)
    assert reloaded.config.problem_type == "multi_label_classification"
    assert reloaded.config.id2label == LABELS
    texts = SPORTS + FINANCE + ["unknown words only"]
    expected = predict_proba(student, tokenizer, texts, 4, 16)
    np.testing.assert_allclose(
        predict_proba(reloaded, tokenizer, texts, 4, 16), expected, atol=1e-5
    )
    np.testing.assert_allclose(
        predict_proba(reloaded, AutoTokenizer.from_pretrained(out), texts, 4, 16),
        expected,
        atol=1e-5,
    )
    # The encoder alone loads with plain transformers; the head is not named `classifier`, so
    # AutoModelForSequenceClassification cannot silently put it on its [CLS] pooler.
    encoder = AutoModel.from_pretrained(out)
    assert encoder.config.hidden_size == student.config.hidden_size
    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert {f"{HEAD_PREFIX}.weight", f"{HEAD_PREFIX}.bias"} <= keys
    assert not [k for k in keys if k.startswith("classifier")]
    meta = load_student_metadata(out)
    assert meta["taxonomy"] == {"names": ["sports", "finance"], "version": "abc123"}
    assert meta["thresholds"] == [0.4, 0.6] and meta["format_version"] == 1
    assert meta["lineage"]["teachers"] == ["tiny-random-llama"]
    assert meta["metrics"] == {"micro_f1": 0.75, "macro_f1": 0.5}
    card = (out / "README.md").read_text()
    assert (
        "| 1 | finance | 0.6000 |" in card and "| micro_f1 | 0.7500 |" in card and "run_id" in card
    )


def test_export_errors(
    student: PreTrainedModel, backbone: tuple[Path, PreTrainedTokenizerFast], tmp_path: Path
) -> None:
    tok = backbone[1]
    out = tmp_path / "x"
    cases: list[tuple[dict[str, object], str]] = [
        ({"taxonomy_names": ["finance", "sports"]}, "do not match model id2label"),
        ({"taxonomy_names": "sports"}, "sequence of str, got 'sports'"),
        ({"taxonomy_version": ""}, "taxonomy_version must be a non-empty str"),
        ({"thresholds": [0.5]}, r"shape \(2,\), got \(1,\)"),
        ({"thresholds": [0.5, 1.2]}, r"in \[0, 1\], got 1.2"),
        ({"thresholds": ["a", "b"]}, "thresholds must be numeric"),
        ({"lineage": {"x": object()}}, "lineage must be JSON-serializable"),
        ({"lineage": ["a"]}, "lineage must be a dict, got list"),
        ({"metrics": {"f1": float("nan")}}, "finite numbers, got 'f1': nan"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            _export(student, tok, out, **kwargs)
    assert not out.exists() and not list(tmp_path.iterdir())
    out.mkdir()
    (out / "stale.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="must not exist or be an empty directory"):
        _export(student, tok, out)


def test_metadata_errors(
    student: PreTrainedModel, backbone: tuple[Path, PreTrainedTokenizerFast], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"no labelmill\.json in"):
        load_student_metadata(tmp_path)
    out = _export(student, backbone[1], tmp_path / "s")
    good = json.loads((out / "labelmill.json").read_text())

    def write(meta: object) -> None:
        (out / "labelmill.json").write_text(json.dumps(meta))

    (out / "labelmill.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        load_student_metadata(out)
    write([1])
    with pytest.raises(ValueError, match="JSON object, got list"):
        load_student_metadata(out)
    write({k: v for k, v in good.items() if k != "metrics"})
    with pytest.raises(ValueError, match=r"lacks keys \['metrics'\]"):
        load_student_metadata(out)
    write({**good, "format_version": 99})
    with pytest.raises(ValueError, match="unsupported format_version 99"):
        load_student_metadata(out)
    write({**good, "taxonomy": {"names": ["a", "b"]}})
    with pytest.raises(ValueError, match="'names' and 'version'"):
        load_student_metadata(out)
    write({**good, "thresholds": [0.5, 0.5, 0.5]})
    with pytest.raises(ValueError, match=r"must have 2 entries .*, got 3"):
        load_student_metadata(out)
    write({**good, "thresholds": [0.5, -0.5]})
    with pytest.raises(ValueError, match=r"got -0\.5"):
        load_student_metadata(out)
    write({**good, "taxonomy": {"names": ["a"], "version": "v"}, "thresholds": [0.5]})
    with pytest.raises(ValueError, match=r"config\.json has 2 labels but labelmill\.json has 1"):
        load_student_metadata(out)
    write(good)
    assert load_student_metadata(out)["thresholds"] == [0.4, 0.6]


def test_export_refuses_pickle_files(
    student: PreTrainedModel,
    backbone: tuple[Path, PreTrainedTokenizerFast],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = type(student).save_pretrained

    def save_with_pickle(self: PreTrainedModel, path: Path, **kwargs: object) -> None:
        original(self, path, **kwargs)
        torch.save({"w": torch.zeros(1)}, Path(path) / "pytorch_model.bin")

    monkeypatch.setattr(type(student), "save_pretrained", save_with_pickle)
    with pytest.raises(RuntimeError, match=r"pickle-format files \['pytorch_model\.bin'\]"):
        _export(student, backbone[1], tmp_path / "s")
    assert not list(tmp_path.iterdir())  # nothing published, temp dir removed


def test_export_to_a_uri_publishes_the_directory_with_its_version(
    student: PreTrainedModel, backbone: tuple[Path, PreTrainedTokenizerFast], tmp_path: Path
) -> None:
    import fsspec

    from labelmill.artifacts import artifact_version, fetch_model
    from labelmill.student.inference import model_version

    local = _export(student, backbone[1], tmp_path / "local")
    uri = "memory://export-test/run/student"
    fs, path = fsspec.core.url_to_fs(uri)
    fs.pipe_file(f"{path}/stale.bin", b"from an earlier export")
    assert _export(student, backbone[1], uri) == uri
    assert not fs.exists(f"{path}/stale.bin")  # replaced as a whole
    meta = load_student_metadata(uri)
    # the same weights give the same version, recorded in labelmill.json
    assert meta["model_version"] == load_student_metadata(local)["model_version"]
    assert meta["model_version"] == model_version(local) == artifact_version(uri)
    assert meta["model_version"].startswith("abc123-")
    copy = fetch_model(uri, cache=tmp_path / "cache")
    assert model_version(copy) == meta["model_version"]
    assert not list(tmp_path.glob("labelmill-export-*"))
    fs.rm(path, recursive=True)


# ---------------------------------------------------------------- pooling and the probe


def test_pooled_features_are_the_masked_mean_normalised(
    student: PreTrainedModel, backbone: tuple[Path, PreTrainedTokenizerFast]
) -> None:
    enc = tokenize_batch(backbone[1], [SPORTS[0], "goal"], max_length=16)
    student.eval()
    with torch.no_grad():
        hidden = student.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[
            0
        ]
        got = student.embed(enc["input_ids"], enc["attention_mask"])
    # by hand for the short row: only its real tokens count, padding does not
    length = int(enc["attention_mask"][1].sum())
    mean = hidden[1, :length].mean(dim=0)
    torch.testing.assert_close(got[1], mean / mean.norm(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2))


def test_linear_probe_fits_separable_features() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(2, 1)
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    targets = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    loss = fit_linear_head(head, features, targets, torch.ones(4), l2=1e-3)
    with torch.no_grad():
        probs = torch.sigmoid(head(features))[:, 0]
    assert (probs[:2] > 0.9).all() and (probs[2:] < 0.1).all()
    assert 0.0 < loss < 0.1
    # a zero-weight row is ignored: flipping its target changes nothing
    flipped = targets.clone()
    flipped[0] = 0.0
    weights = torch.tensor([0.0, 1.0, 1.0, 1.0])
    first = torch.nn.Linear(2, 1)
    second = torch.nn.Linear(2, 1)
    second.load_state_dict(first.state_dict())
    fit_linear_head(first, features, targets, weights, l2=1e-3)
    fit_linear_head(second, features, flipped, weights, l2=1e-3)
    torch.testing.assert_close(first.weight, second.weight)


def test_linear_probe_sums_over_workers() -> None:
    """With all_reduce summing two identical shards, the fit equals the fit on one shard
    (the weighted mean loss is the same): every worker takes the same step."""
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    targets = torch.tensor([[1.0], [0.0], [0.7]])
    alone, doubled = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    doubled.load_state_dict(alone.state_dict())
    fit_linear_head(alone, features, targets, torch.ones(3), l2=1e-2)
    fit_linear_head(doubled, features, targets, torch.ones(3), l2=1e-2, all_reduce=lambda t: 2 * t)
    torch.testing.assert_close(alone.weight, doubled.weight, rtol=1e-4, atol=1e-5)


def test_linear_probe_errors(student: PreTrainedModel) -> None:
    head = torch.nn.Linear(2, 1)
    features, targets = torch.zeros(2, 2), torch.zeros(2, 1)
    with pytest.raises(ValueError, match="l2 must be a number >= 0, got -1"):
        fit_linear_head(head, features, targets, torch.ones(2), l2=-1)
    with pytest.raises(ValueError, match=r"targets \(N, 1\), got \(2, 2\) and \(2, 3\)"):
        fit_linear_head(head, features, torch.zeros(2, 3), torch.ones(2), l2=0.0)
    with pytest.raises(ValueError, match="weights must have a positive sum"):
        fit_linear_head(head, features, targets, torch.zeros(2), l2=0.0)
    with pytest.raises(ValueError, match="at least one non-empty batch"):
        embed_batches(student, [])


def test_load_pooled_classifier_errors(student: PreTrainedModel, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no model\.safetensors in"):
        load_pooled_classifier(tmp_path)
    plain = tmp_path / "plain"
    student.encoder.save_pretrained(plain)
    with pytest.raises(ValueError, match="holds no labelmill head"):
        load_pooled_classifier(plain)
