"""The CPU fast path: runtimes measured and chosen at export, guarded, recorded, reloaded.

A tiny random BERT with a WordLevel tokenizer built in a temp dir (no hub, no Ray).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from labelmill.student import fast_path
from labelmill.student.export import export_student
from labelmill.student.fast_path import add_fast_path, export_onnx
from labelmill.student.inference import load_student, predict_sorted
from labelmill.student.model import build_student

NAMES = ["sports", "finance", "music"]
WORDS = [
    "the",
    "team",
    "won",
    "match",
    "a",
    "great",
    "goal",
    "in",
    "game",
    "player",
    "scored",
    "twice",
    "bank",
    "raised",
    "rates",
    "stock",
    "prices",
    "fell",
    "today",
    "market",
    "lost",
    "money",
    "band",
    "played",
    "song",
    "loud",
    "guitar",
    "drums",
    "concert",
]
THRESHOLDS = [0.5, 0.45, 0.55]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 30)))) for _ in range(n)]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-bert")
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    raw.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=specials))
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", raw.token_to_id("[CLS]")), ("[SEP]", raw.token_to_id("[SEP]"))],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path


def export(backbone: Path, out: Path, **fast: object) -> Path:
    from transformers import AutoTokenizer

    torch.manual_seed(1)
    model = build_student(str(backbone), len(NAMES), dict(enumerate(NAMES))).eval()
    with torch.no_grad():  # a head with visible, label-dependent scores
        model.classifier.weight.normal_(0.0, 1.0)
    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    return export_student(
        model,
        tokenizer,
        out,
        NAMES,
        "v1",
        THRESHOLDS,
        {"student_config": {"max_length": 32}},
        {},
        **fast,
    )


def test_export_measures_every_runtime_and_keeps_the_guard(backbone: Path, tmp_path: Path) -> None:
    dev = texts(60)
    labels = np.random.default_rng(1).integers(0, 2, size=(60, len(NAMES)))
    out = export(backbone, tmp_path / "s", fast_path_texts=dev, fast_path_labels=labels)
    record = json.loads((out / "labelmill.json").read_text())["runtime"]
    assert set(record["candidates"]) == set(fast_path.RUNTIMES)
    assert record["dev_rows"] == 60 and record["reference"] == "dev_labels"
    reference = record["candidates"]["torch-float32"]
    assert reference["max_abs_diff"] == 0.0 and reference["micro_f1_change"] == 0.0
    chosen = record["candidates"][record["name"]]
    if record["name"] != "torch-float32":  # a faster runtime within the guard was found
        assert chosen["within_guard"] and chosen["texts_per_s"] > reference["texts_per_s"]
        assert chosen["max_abs_diff"] <= fast_path.MAX_ABS_DIFF
        assert chosen["micro_f1_change"] <= fast_path.MAX_F1_CHANGE
    # what is served equals float32 within the guard, in input order
    fast = load_student(out, max_length=64)
    plain = load_student(out, max_length=64, runtime="torch-float32")
    assert fast.runtime == record["name"] and plain.runtime == "torch-float32"
    assert plain.runner is None
    probe = texts(40, seed=7)
    got, want = predict_sorted(fast, probe, 8), predict_sorted(plain, probe, 8)
    assert got.shape == (40, len(NAMES))
    assert np.abs(got - want).max() <= fast_path.MAX_ABS_DIFF
    # no pickle, and no scratch files left behind
    assert not [p for p in out.iterdir() if p.name.startswith(".fast-path-")]


def test_outside_the_guard_float32_is_kept(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fast_path, "MAX_ABS_DIFF", -1.0)  # nothing can pass
    out = export(backbone, tmp_path / "s", fast_path_texts=texts(20))
    record = json.loads((out / "labelmill.json").read_text())["runtime"]
    assert record["name"] == "torch-float32"
    assert record["reason"] == "no faster runtime within the accuracy guard: float32 kept"
    assert record["reference"] == "float32 decisions"
    assert not any(c["within_guard"] for c in record["candidates"].values())
    assert not list(out.glob("*.onnx")) and "file" not in record
    assert load_student(out, max_length=64).runtime == "torch-float32"


def record_onnx(out: Path) -> dict:
    """Record an ONNX float32 runtime in ``out`` by hand (whatever the speed figures say)."""
    student = load_student(out, max_length=64, runtime="torch-float32")
    target = out / "model-onnx-float32.onnx"
    inputs = export_onnx(student.model, student.tokenizer, target)
    record = {
        "name": "onnx-float32",
        "file": target.name,
        "sha256": fast_path._sha256(target),
        "inputs": inputs,
    }
    meta = json.loads((out / "labelmill.json").read_text())
    meta["runtime"] = record
    (out / "labelmill.json").write_text(json.dumps(meta))
    return record


def test_onnx_graph_scores_like_torch(backbone: Path, tmp_path: Path) -> None:
    out = export(backbone, tmp_path / "s")
    record = record_onnx(out)
    # the inputs the student reads, bound by name (a positional mix-up shifts the scores);
    # token_type_ids, which the tokenizer also gives, is not one of them (mean pooling)
    assert record["inputs"] == ["input_ids", "attention_mask"]
    fast = load_student(out, max_length=64)
    plain = load_student(out, max_length=64, runtime="torch-float32")
    assert fast.runtime == "onnx-float32"
    probe = texts(30, seed=3)
    assert np.abs(predict_sorted(fast, probe, 4) - predict_sorted(plain, probe, 16)).max() < 1e-4
    assert predict_sorted(fast, [], 4).shape == (0, len(NAMES))


def test_an_altered_graph_is_refused(backbone: Path, tmp_path: Path) -> None:
    out = export(backbone, tmp_path / "s")
    record_onnx(out)
    with (out / "model-onnx-float32.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ValueError, match=r"runtime\.sha256 does not match"):
        load_student(out, max_length=64)
    (out / "model-onnx-float32.onnx").unlink()
    with pytest.raises(ValueError, match=r"runtime\.file 'model-onnx-float32.onnx' is missing"):
        load_student(out, max_length=64)
    assert load_student(out, max_length=64, runtime="torch-float32").runner is None


def test_bad_runtime_names_are_refused(backbone: Path, tmp_path: Path) -> None:
    out = export(backbone, tmp_path / "s")
    with pytest.raises(ValueError, match="runtime must be 'auto' or 'torch-float32', got 'gpu'"):
        load_student(out, max_length=64, runtime="gpu")
    meta = json.loads((out / "labelmill.json").read_text())
    meta["runtime"] = {"name": "tensorrt"}
    (out / "labelmill.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"runtime\.name must be one of .* got 'tensorrt'"):
        load_student(out, max_length=64)
    with pytest.raises(ValueError, match="dev_texts must hold at least one non-empty text"):
        add_fast_path(out, ["  "])


def test_add_fast_path_to_an_existing_export(backbone: Path, tmp_path: Path) -> None:
    out = export(backbone, tmp_path / "s")
    before = load_student(out, max_length=64).model_version
    record = add_fast_path(out, texts(30), candidates=("torch-float32", "onnx-int8"))
    assert set(record["candidates"]) == {"torch-float32", "onnx-int8"}
    meta = json.loads((out / "labelmill.json").read_text())
    assert meta["runtime"] == record
    loaded = load_student(out, max_length=64)
    assert loaded.runtime == record["name"]
    assert loaded.model_version == before  # the weights' identity does not change
    assert list(out.glob("*.onnx")) == ([out / record["file"]] if "file" in record else [])
