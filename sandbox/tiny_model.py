"""A model the project makes itself: a tiny llama-architecture GGUF that the real Ollama loads and answers
with (random weights, so the tokens mean nothing), about 0.5 MB.

Written with PyPI's ``gguf`` (GGUFWriter) and numpy: the llama tokenizer's vocabulary (``<unk>``, ``<s>``,
``</s>``, the 256 byte tokens, a few word pieces), embedding 64, two blocks, four heads, feed-forward 128,
float32. ``seed`` picks the weights, so two seeds are two builds of the same model with different digests.
``trained`` adds figures of the run that made it (the sandbox's trainer: its fitted weights and loss) as
``gpu_estate.trained.<name>`` keys, so the file says which run it came from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

WORDS = ("▁hello", "▁world", "▁the", "▁estate", "▁model", "▁answers", "▁tokens", "▁from", "▁a", "▁tiny",
         "▁gpu", "▁sandbox", "▁ollama", "▁is", "▁real", "▁yes", "▁no", "▁and", "▁it", "▁runs")
EMBED, BLOCKS, HEADS, FEED_FORWARD, CONTEXT = 64, 2, 4, 128, 512
WORD_BIAS = 0.5
PARAMETERS = {"num_predict": 24}
"""Its Modelfile's defaults: it seldom says its end-of-text token, so an answer stops after 24 tokens
unless the request asks for fewer (a client that names no limit would wait for the whole context)."""


def vocabulary() -> tuple:
    """(tokens, scores, token types) of the llama tokenizer model: control, bytes, then word pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(WORDS)
    types = [2, 3, 3] + [6] * 256 + [1] * len(WORDS)  # unknown, control, byte, normal
    scores = [0.0] * 259 + [-float(i) for i in range(len(WORDS))]
    return tokens, scores, types


def write_tiny_gguf(path: Path, seed: int = 1, trained: Optional[Mapping[str, float]] = None) -> Path:
    import gguf
    import numpy as np

    tokens, scores, types = vocabulary()
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> "np.ndarray":
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"gpu-estate tiny (seed {seed})")
    for key, value in sorted((trained or {}).items()):
        w.add_float32(f"gpu_estate.trained.{key}", float(value))
    w.add_context_length(CONTEXT)
    w.add_embedding_length(EMBED)
    w.add_block_count(BLOCKS)
    w.add_feed_forward_length(FEED_FORWARD)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(EMBED // HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    vocab = len(tokens)
    # numpy shapes are (rows, columns): GGUF's ne is the reverse, as llama.cpp expects (ne0 = EMBED).
    # One dimension of every embedding is a large constant that the residual stream carries to the end,
    # and the output favours the word pieces along it: whatever the random rest, the model says words
    # (not control or byte tokens, which print nothing) and rarely ends early.
    embeddings = weights(vocab, EMBED)
    embeddings[:, 0] = 1.0
    output = weights(vocab, EMBED)
    output[:, 0] = [WORD_BIAS if t == 1 else -WORD_BIAS for t in types]
    w.add_tensor("token_embd.weight", embeddings)
    w.add_tensor("output_norm.weight", np.ones(EMBED, dtype=np.float32))
    w.add_tensor("output.weight", output)
    for i in range(BLOCKS):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(EMBED, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{i}.{name}.weight", weights(EMBED, EMBED))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(EMBED, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", weights(FEED_FORWARD, EMBED))
        w.add_tensor(f"blk.{i}.ffn_up.weight", weights(FEED_FORWARD, EMBED))
        w.add_tensor(f"blk.{i}.ffn_down.weight", weights(EMBED, FEED_FORWARD))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
