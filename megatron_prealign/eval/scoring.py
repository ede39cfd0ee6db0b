"""Scoring text with Megatron-Core's ``GPTModel``: the one place evaluation runs the model.

Everything here works on the model of this rank under the current ``parallel_state``:

* :func:`token_logprobs` — ``log p(x_{t+1} | x_{<=t})`` per position, computed with Megatron's
  vocab-parallel cross entropy (the model is called with ``labels``), so it is exact under
  tensor parallelism without gathering the vocabulary.
* :func:`next_token_logits` — full-vocabulary logits of the last position (gathered over TP).
* :func:`last_token_hidden` — final-norm hidden state at chosen positions (classification heads).
* :func:`score_sequences` — batched sum of log-probs of a continuation given a context.
* :func:`generate` — greedy or sampled continuation (no KV cache; full re-forward each step).

Pipeline parallelism is not supported for evaluation (PP must be 1). Inputs are padded on the
right; with a causal mask, padding never influences real positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from megatron.core import parallel_state


def _check_pp() -> None:
    if parallel_state.model_parallel_is_initialized() and parallel_state.get_pipeline_model_parallel_world_size() > 1:
        raise RuntimeError("evaluation needs pipeline-model-parallel size 1 (got >1); load the checkpoint with PP=1")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device holding ``model``'s parameters."""
    return next(model.parameters()).device


def _forward(model: torch.nn.Module, tokens: torch.Tensor, **kwargs) -> torch.Tensor:
    """``model`` on a ``[b, s]`` batch with positions ``0..s-1`` and Megatron's boolean causal mask
    ``[1, 1, s, s]`` (``True`` marks positions *not* attended)."""
    b, s = tokens.shape
    positions = torch.arange(s, dtype=torch.long, device=tokens.device).unsqueeze(0).expand(b, s)
    mask = torch.ones(s, s, dtype=torch.bool, device=tokens.device).triu(diagonal=1)[None, None]
    return model(input_ids=tokens, position_ids=positions, attention_mask=mask, **kwargs)


def token_logprobs(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token.

    Args:
        model: this rank's ``GPTModel`` (PP=1; any TP).
        tokens: ``[b, s]`` token ids (s >= 2).

    Returns:
        ``[b, s-1]`` float32 tensor; element ``[i, t]`` is ``log p(tokens[i, t+1] | tokens[i, :t+1])``
        under the model's (padded) vocabulary.
    """
    _check_pp()
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(f"token_logprobs needs a [batch, seq>=2] tensor, got shape {tuple(tokens.shape)}")
    loss = _forward(model, tokens[:, :-1].contiguous(), labels=tokens[:, 1:].contiguous())
    return -loss.float()


def next_token_logits(model: torch.nn.Module, tokens: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Full-vocabulary logits predicting the token after position ``lengths-1`` of each row.

    Args:
        model: this rank's ``GPTModel`` (PP=1); TP shards are gathered.
        tokens: ``[b, s]`` right-padded token ids.
        lengths: ``[b]`` real lengths (default: all ``s``).

    Returns:
        ``[b, V_padded]`` float32 logits.
    """
    _check_pp()
    logits = _forward(model, tokens, runtime_gather_output=True)  # [b, s, V]
    if lengths is None:
        return logits[:, -1, :].float()
    idx = (lengths.to(logits.device) - 1).clamp(min=0)
    return logits[torch.arange(logits.shape[0], device=logits.device), idx, :].float()


def final_hidden_states(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Decoder output after the final layer norm, ``[b, s, h]`` (TP=1 or no sequence parallelism)."""
    _check_pp()
    if getattr(model.config, "sequence_parallel", False):
        raise RuntimeError("final_hidden_states does not support sequence parallelism; evaluate with TP=1")
    old, model.post_process = model.post_process, False  # return the decoder output, not logits
    try:
        hidden = _forward(model, tokens)  # [s, b, h]
    finally:
        model.post_process = old
    return hidden.transpose(0, 1)


def last_token_hidden(model: torch.nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Final hidden state of the last real token of each row, ``[b, h]`` (differentiable)."""
    hidden = final_hidden_states(model, tokens)
    idx = (lengths.to(hidden.device) - 1).clamp(min=0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx, :]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple:
    """Right-pad ``sequences`` into a ``[b, max_len]`` long tensor; returns ``(tokens, lengths)``."""
    max_len = max(len(s) for s in sequences)
    out = torch.full((len(sequences), max_len), pad_id, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    return out.to(device), lengths.to(device)


@dataclass
class SequenceScore:
    """Log-likelihood of a continuation."""

    logprob: float
    """Sum of ``log p`` over the continuation tokens (natural log)."""
    num_tokens: int
    """Number of continuation tokens scored."""

    @property
    def mean_logprob(self) -> float:
        """Length-normalised log-likelihood (per token)."""
        return self.logprob / max(self.num_tokens, 1)


@torch.no_grad()
def score_sequences(
    model: torch.nn.Module,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 16,
    pad_id: int = 0,
    progress: bool = False,
) -> List[SequenceScore]:
    """``log p(continuation | context)`` for each pair, batched and length-sorted.

    Args:
        model: this rank's ``GPTModel`` in eval mode (PP=1).
        contexts: context token ids per item (at least one token each, e.g. ``[eod]``).
        continuations: continuation token ids per item (at least one token).
        batch_size: sequences per forward pass.
        pad_id: any valid id used for right padding (never scored).
        progress: show a tqdm bar over batches.

    Returns:
        One :class:`SequenceScore` per item, in input order.

    Raises:
        ValueError: an empty context/continuation, or a sequence longer than the model supports.
    """
    if len(contexts) != len(continuations):
        raise ValueError("contexts and continuations differ in length")
    max_len = getattr(model, "max_sequence_length", None)
    seqs = []
    for i, (ctx, cont) in enumerate(zip(contexts, continuations)):
        if len(ctx) < 1 or len(cont) < 1:
            raise ValueError(f"item {i}: context and continuation need at least one token each")
        seq = list(ctx) + list(cont)
        if max_len is not None and len(seq) > max_len:
            raise ValueError(f"item {i}: {len(seq)} tokens exceed the model's max sequence length {max_len}")
        seqs.append(seq)
    device = model_device(model)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    results: List[Optional[SequenceScore]] = [None] * len(seqs)
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="score", unit="batch")
    for start in starts:
        idx = order[start : start + batch_size]
        tokens, _ = pad_batch([seqs[i] for i in idx], pad_id, device)
        if tokens.shape[1] < 2:
            tokens = torch.nn.functional.pad(tokens, (0, 1), value=pad_id)
        lp = token_logprobs(model, tokens)  # [b, s-1]
        for row, i in enumerate(idx):
            c, n = len(contexts[i]), len(continuations[i])
            # Continuation tokens sit at positions c..c+n-1; their log-probs at c-1..c+n-2.
            results[i] = SequenceScore(logprob=float(lp[row, c - 1 : c - 1 + n].sum()), num_tokens=n)
    return results  # type: ignore[return-value]


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    eod_id: Optional[int] = None,
    temperature: float = 0.0,
    top_k: int = 0,
    vocab_limit: Optional[int] = None,
    batch_size: int = 8,
    generator: Optional[torch.Generator] = None,
) -> List[List[int]]:
    """Continue each prompt by up to ``max_new_tokens`` tokens (re-running the full forward each step).

    Args:
        model: this rank's ``GPTModel`` in eval mode (PP=1).
        prompts: prompt token ids (non-empty).
        max_new_tokens: tokens to add at most; generation of a row stops at ``eod_id``.
        eod_id: end-of-document id that stops a row (kept out of the returned continuation).
        temperature: 0 for greedy decoding, else softmax temperature for sampling.
        top_k: sample only among the ``k`` most likely tokens (0 = all).
        vocab_limit: ids ``>= vocab_limit`` (Megatron's vocabulary padding) are never produced.
        batch_size: prompts per forward pass.
        generator: torch RNG for sampling (deterministic when seeded).

    Returns:
        The generated continuation ids per prompt (prompt excluded).
    """
    max_len = getattr(model, "max_sequence_length", None)
    device = model_device(model)
    outputs: List[List[int]] = []
    for start in range(0, len(prompts), batch_size):
        rows = [list(p) for p in prompts[start : start + batch_size]]
        if any(len(r) == 0 for r in rows):
            raise ValueError("generate: empty prompt")
        if max_len is not None:
            rows = [r[-(max_len - 1) :] if len(r) >= max_len else r for r in rows]
        new: List[List[int]] = [[] for _ in rows]
        done = [False] * len(rows)
        for _ in range(max_new_tokens):
            active = [i for i, d in enumerate(done) if not d]
            if not active:
                break
            seqs = [rows[i] + new[i] for i in active]
            if max_len is not None:
                seqs = [s[-max_len:] for s in seqs]
            tokens, lengths = pad_batch(seqs, 0, device)
            logits = next_token_logits(model, tokens, lengths)
            if vocab_limit is not None and vocab_limit < logits.shape[-1]:
                logits[:, vocab_limit:] = -math.inf
            if temperature <= 0:
                nxt = logits.argmax(dim=-1)
            else:
                logits = logits / temperature
                if top_k > 0:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, -math.inf)
                probs = torch.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1)
            for j, i in enumerate(active):
                tok = int(nxt[j])
                if eod_id is not None and tok == eod_id:
                    done[i] = True
                else:
                    new[i].append(tok)
        outputs.extend(new)
    return outputs
