"""Fast path for sweeping ``add`` interventions over multiple-choice loglikelihood tasks.

For a split layer ``l`` the residual stream entering block ``l`` is computed once per batch
(:meth:`SweepEngine.capture`, which stops the forward there); each edit (alpha x direction) then re-runs
only blocks ``l..L-1`` (:meth:`SweepEngine.tail`), several edits stacked along the batch dimension in one
forward. The tail is the model's own forward with blocks ``< l`` short-circuited and block ``l``'s input
replaced, so masks, rotary embeddings, final norm and LM head are exactly the model's. Logits are
computed only where answers are scored: a pre-hook on the LM head gathers those positions first.
Batches are built like ``HFLM._loglikelihood_tokens`` (length-sorted, right-padded, no attention mask)
and every forward goes through ``lm._model_call``, so results match ``lm_eval --model rolevec_hf``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rolevec_lmeval.interventions import Edit, Steering, find_blocks, steering
from rolevec_lmeval.sweep_tasks import Encoded


class _Stop(Exception):
    """Raised by the capture hook: nothing after block ``l`` is needed."""


@dataclass
class Batch:
    rows: list[int]  # index into Encoded.inputs per row
    ids: Tensor  # [B, T] long, right-padded with 0 (as lm-eval's pad_and_concat)
    gather: Tensor  # [B, k] long: the last k positions of each row (k = longest continuation)
    tok_row: Tensor  # [n] long: per scored continuation token, its row ...
    tok_pos: Tensor  # [n] long: ... its position among the k kept ...
    tok_id: Tensor  # [n] long: ... the token id ...
    tok_req: Tensor  # [n] long: ... and the request it belongs to

    @property
    def n_tokens(self) -> int:
        return int(self.ids.numel())


Scores = tuple[Tensor, Tensor]  # (loglikelihood [n_requests] float64, is_greedy [n_requests] bool)


class SweepEngine:
    """Scores an :class:`Encoded` question set under edits; ``lm`` is an HFLM / RoleVecLM."""

    def __init__(self, lm: Any, batch_size: int = 16, stack: int = 8, max_stack_tokens: int = 65536) -> None:
        self.lm, self.model = lm, lm.model
        self.blocks = find_blocks(self.model)
        self.head = self.model.get_output_embeddings()
        self.batch_size, self.stack, self.max_stack_tokens = batch_size, max(1, stack), max_stack_tokens
        self.softmax_dtype = getattr(lm, "softmax_dtype", None)
        self._tuple_out: int = 0  # blocks return a tensor (0) or a tuple of this length

    # ---- batching --------------------------------------------------------------------------------------
    def batches(self, enc: Encoded) -> list[Batch]:
        by_input: dict[int, list[int]] = {}
        for r, i in enumerate(enc.req_input):
            by_input.setdefault(i, []).append(r)
        order = sorted(range(len(enc.inputs)), key=lambda i: (-len(enc.inputs[i]), tuple(enc.inputs[i])))
        device = self.lm.device
        out = []
        for s in range(0, len(order), self.batch_size):
            rows = order[s : s + self.batch_size]
            lens = [len(enc.inputs[i]) for i in rows]
            ids = torch.zeros(len(rows), max(lens), dtype=torch.long)
            for b, i in enumerate(rows):
                ids[b, : lens[b]] = torch.tensor(enc.inputs[i])
            k = max(len(enc.req_cont[r]) for i in rows for r in by_input[i])
            gather = (torch.tensor(lens)[:, None] - k + torch.arange(k)[None, :]).clamp(min=0)
            toks = [(b, k - len(enc.req_cont[r]) + j, t, r) for b, i in enumerate(rows) for r in by_input[i]
                    for j, t in enumerate(enc.req_cont[r])]
            tr, tp, ti, tq = (torch.tensor(c, dtype=torch.long) for c in zip(*toks, strict=True))
            out.append(Batch(rows, ids.to(device), gather.to(device), tr, tp, ti, tq))
        return out

    # ---- forwards ----------------------------------------------------------------------------------------
    @contextmanager
    def _keep_only(self, gather: Tensor) -> Iterator[None]:
        """Feed the LM head only the gathered positions: hidden [N, T, d] -> [N, k, d]."""
        if self.head is None:
            yield
            return

        def hook(module, args):
            h = args[0]
            idx = gather[:, :, None].expand(-1, -1, h.shape[-1])
            return (h.gather(1, idx), *args[1:])

        handle = self.head.register_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def _logprobs(self, ids: Tensor, gather: Tensor) -> Tensor:
        """Log-softmax at the gathered positions: [N, k, vocab]."""
        with torch.no_grad(), self._keep_only(gather):
            logits = self.lm._model_call(ids)
        if self.head is None:  # no separable head: slice after the fact
            logits = logits.gather(1, gather[:, :, None].expand(-1, -1, logits.shape[-1]))
        return F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)

    def _scores(self, batch: Batch, logprobs: Tensor, n_requests: int) -> Scores:
        """Per request: summed log-probability and whether every token is the argmax."""
        lp = logprobs[batch.tok_row, batch.tok_pos, batch.tok_id.to(logprobs.device)].cpu()
        hit = (logprobs[batch.tok_row, batch.tok_pos].argmax(-1).cpu() == batch.tok_id).to(torch.long)
        ll = torch.zeros(n_requests, dtype=lp.dtype).index_add_(0, batch.tok_req, lp).double()
        miss = torch.zeros(n_requests, dtype=torch.long).index_add_(0, batch.tok_req, 1 - hit)
        return ll, miss == 0

    def score(self, batch: Batch, n_requests: int, steerings: list[Steering] = ()) -> Scores:
        """One full forward, optionally with hooked steerings (the ``rolevec_hf`` code path)."""
        with steering(self.model, list(steerings)):
            return self._scores(batch, self._logprobs(batch.ids, batch.gather), n_requests)

    def capture(self, batch: Batch, layer: int) -> Tensor:
        """The residual stream entering block ``layer``: [B, T, d_model] (blocks >= layer not run)."""
        store: dict[str, Tensor] = {}

        def pre(module, args, kwargs):
            store["h"] = (args[0] if args else kwargs["hidden_states"]).detach()
            raise _Stop

        def post(module, args, output):
            self._tuple_out = len(output) if isinstance(output, tuple) else 0

        handles = [self.blocks[layer].register_forward_pre_hook(pre, with_kwargs=True),
                   self.blocks[0].register_forward_hook(post)]
        try:
            with torch.no_grad():
                self.lm._model_call(batch.ids)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return store["h"]

    @contextmanager
    def _start_at(self, layer: int, hidden: Tensor) -> Iterator[None]:
        """Short-circuit blocks ``< layer`` and feed ``hidden`` into block ``layer``."""
        n_out = self._tuple_out

        def passthrough(*args: Any, **kwargs: Any) -> Any:
            x = args[0] if args else kwargs["hidden_states"]
            return (x, *([None] * (n_out - 1))) if n_out else x

        def pre(module, args, kwargs):
            if args:
                return (hidden, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": hidden}

        skipped = list(self.blocks)[:layer]
        for block in skipped:
            block.forward = passthrough
        handle = self.blocks[layer].register_forward_pre_hook(pre, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
            for block in skipped:
                del block.forward

    def tail(self, batch: Batch, layer: int, h: Tensor, edits: list[Edit], n_requests: int) -> list[Scores]:
        """Scores for each edit of ``h`` (the input of block ``layer``), re-running blocks ``layer..L-1``."""
        per = max(1, min(self.stack, self.max_stack_tokens // max(1, batch.n_tokens)))
        out: list[Scores] = []
        for s in range(0, len(edits), per):
            chunk = edits[s : s + per]
            hidden = torch.cat([e(h) for e in chunk])  # [K*B, T, d_model]
            ids, gather = batch.ids.repeat(len(chunk), 1), batch.gather.repeat(len(chunk), 1)
            with self._start_at(layer, hidden):
                logprobs = self._logprobs(ids, gather)  # [K*B, k, vocab]
            for j in range(len(chunk)):
                out.append(self._scores(batch, logprobs[j * len(batch.rows) : (j + 1) * len(batch.rows)],
                                        n_requests))
        return out
