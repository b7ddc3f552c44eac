"""The one sentence-encoder actor: a Hugging Face encoder loaded once per Ray actor.

The embedding teacher (cosine scores against label texts) and the campaign (document
embeddings for diverse selection) both subclass :class:`SentenceEncoder`, so they share one
encoding: mean-pooled, L2-normalised, texts sorted by length into passes of about
``tokens_per_pass`` padded tokens, on CPU (``threads``) or a GPU (``device="cuda"``).
"""

from __future__ import annotations

import numpy as np

from labelmill.embedding import l2_normalize, mean_pool
from labelmill.errors import ConfigError


class SentenceEncoder:
    """Base of the encoder UDFs: ``embed(texts) -> (vectors (N, D), tokens used, truncated)``.

    Args:
        model_path: local Hugging Face encoder directory.
        max_length: encoder input cap in tokens (lowered to the model's position limit).
        device: ``"cpu"`` or ``"cuda"`` (the Ray task must reserve a GPU for the latter).
        threads: torch CPU threads (``device="cpu"`` only).
        tokens_per_pass: padded tokens per forward pass.
    """

    def __init__(
        self,
        model_path: str,
        max_length: int,
        device: str = "cpu",
        threads: int = 1,
        tokens_per_pass: int = 4096,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("accelerator 'gpu' was asked for but torch sees no CUDA device")
        if device == "cpu":
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = device
        self.tokens_per_pass = tokens_per_pass
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModel.from_pretrained(model_path).to(device).eval()
        positions = getattr(self.model.config, "max_position_embeddings", None) or max_length
        self.max_length = min(max_length, int(positions))

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[int], list[bool]]:
        """texts (N) -> (L2-normalised mean-pooled embeddings (N, D), tokens used, truncated).

        Texts are encoded in order of length, in passes of about ``tokens_per_pass`` padded
        tokens, so that short texts are not padded to the longest of the batch.
        """
        full = [len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]]
        used = [min(n, self.max_length) for n in full]
        order = sorted(range(len(texts)), key=used.__getitem__)
        passes: list[list[int]] = [[]]
        for index in order:  # ascending length: a pass is padded to its last text
            if passes[-1] and (len(passes[-1]) + 1) * used[index] > self.tokens_per_pass:
                passes.append([])
            passes[-1].append(index)
        encoded = np.concatenate([self._encode([texts[i] for i in chunk]) for chunk in passes])
        vectors = np.empty_like(encoded)
        vectors[order] = encoded
        truncated = [n > u for n, u in zip(full, used, strict=True)]
        return vectors, used, truncated

    def _encode(self, texts: list[str]) -> np.ndarray:
        """One forward pass: texts (n) -> L2-normalised mean-pooled embeddings (n, D)."""
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        with self.torch.inference_mode():
            inputs = {name: tensor.to(self.device) for name, tensor in encoded.items()}
            hidden = self.model(**inputs).last_hidden_state.float().cpu().numpy()
        return l2_normalize(mean_pool(hidden, encoded["attention_mask"].numpy()))
