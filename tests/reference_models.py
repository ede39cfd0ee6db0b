"""GPT models with a known next-token distribution, for checking evaluation metrics.

:func:`set_bigram_weights` turns a Megatron-Core ``GPTModel`` (untied embeddings, learned
absolute positions, TP=1) into an exact bigram model: attention and MLP outputs are zeroed, so
the residual stream is the token embedding, and the output layer is solved so that
``logits(next | prev) = table[prev]`` up to a per-row constant (softmax-invariant).
:func:`set_uniform_weights` makes every next token equally likely.
"""

from __future__ import annotations

import torch


def _zero_blocks(model: torch.nn.Module) -> None:
    for layer in model.decoder.layers:
        for mod in (layer.self_attention.linear_proj, layer.mlp.linear_fc2):
            mod.weight.zero_()
            if getattr(mod, "bias", None) is not None:
                mod.bias.zero_()
    pos = getattr(model.embedding, "position_embeddings", None)
    if pos is not None:
        pos.weight.zero_()


@torch.no_grad()
def set_uniform_weights(model: torch.nn.Module) -> None:
    """All logits zero: ``p(next) = 1 / V_padded`` everywhere."""
    _zero_blocks(model)
    model.output_layer.weight.zero_()
    if getattr(model.output_layer, "bias", None) is not None:
        model.output_layer.bias.zero_()


@torch.no_grad()
def set_bigram_weights(model: torch.nn.Module, table: torch.Tensor) -> None:
    """Make ``model`` a bigram model with ``log_softmax(table[prev])`` as next-token log-probs.

    Args:
        model: a ``GPTModel`` with untied embeddings, ``hidden_size >= vocab + 1``, TP=1.
        table: ``[V, V]`` logits; row = previous token, column = next token.

    Raises:
        ValueError: tied embeddings or a hidden size too small for an exact solution.
    """
    if model.share_embeddings_and_output_weights:
        raise ValueError("set_bigram_weights needs untied embeddings (untie_embeddings_and_output_weights=True)")
    emb = model.embedding.word_embeddings.weight  # [V, h]
    v, h = emb.shape
    if h < v + 1:
        raise ValueError(f"hidden size {h} must exceed the vocabulary {v} for an exact bigram model")
    _zero_blocks(model)
    gen = torch.Generator().manual_seed(0)
    emb.copy_(torch.randn(v, h, generator=gen))
    norm = model.decoder.final_layernorm
    normed = norm(emb.unsqueeze(1)).squeeze(1).double()  # [V, h], what the output layer sees
    # Solve normed @ W^T = table (rows of `normed` are independent when h > V).
    w_t = torch.linalg.lstsq(normed, table.double().to(normed.device)).solution  # [h, V]
    model.output_layer.weight.copy_(w_t.t().to(model.output_layer.weight.dtype))
