"""Language-prefix templates and sequence encodings, with token -> nucleotide spans.

A sequence is rendered into text (``Domain: DNA Promoter\\nSequence: ACGT...\\nAnnotation:``),
tokenised by the model's fast tokenizer with character offsets, and every token is mapped back
to the nucleotides it covers. Three sequence encodings:

- ``native``: the sequence as plain text, split by the model's own tokenizer (byte-level BPE for
  OPT/GPT-2/Llama, WordPiece for BERT-style models);
- ``nucleotide``: one dedicated new token per base (``[nt_A]`` ...), added to the vocabulary; the
  model's embedding matrix is resized and the new rows are trained;
- ``kmer``: space-separated k-mers (``k``, ``kmer_stride``), split by the model's tokenizer.

This module is the only place that knows how tokens relate to nucleotides; attribution and the
app's token preview use :meth:`SequenceEncoder.encode_with_spans`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .config import EncodingConfig

PREFIX_TEMPLATES: dict[str, str] = {
    "paper": "Domain: {domain}\nSequence: {sequence}\nAnnotation:",
    "rich": "Domain: {domain}\nSpecies: {species}\nTask: {task}\nSequence: {sequence}\nAnnotation:",
    "none": "{sequence}",
}
NUCLEOTIDE_TOKENS: dict[str, str] = {base: f"[nt_{base}]" for base in "ACGTN"}
PROMPT, SEQUENCE, SPECIAL = "prompt", "sequence", "special"


class EncodingError(ValueError):
    """An encoding setting cannot be applied (unknown template field, tokenizer without offsets...)."""


@dataclass
class EncodedSequence:
    """One encoded sequence with, per token, the nucleotide span it covers."""

    input_ids: list[int]
    tokens: list[str]
    spans: list[Optional[tuple[int, int]]]  # [start, end) in the sequence; None for prompt/special
    kinds: list[str]  # "special", "prompt" or "sequence"
    truncated_at: Optional[int]  # first nucleotide not seen by the model, None when all fit


def template_for(cfg: EncodingConfig) -> str:
    """The prefix template text for a config (a name or a custom template)."""
    return PREFIX_TEMPLATES.get(cfg.prefix, cfg.prefix)


def add_nucleotide_tokens(tokenizer) -> list[int]:
    """Add the dedicated nucleotide tokens to ``tokenizer``; return their ids (A, C, G, T, N)."""
    from tokenizers import AddedToken

    new = [
        AddedToken(tok, normalized=False, single_word=False, lstrip=False, rstrip=False, special=False)
        for tok in NUCLEOTIDE_TOKENS.values()
    ]
    tokenizer.add_tokens(new)
    return [tokenizer.convert_tokens_to_ids(tok) for tok in NUCLEOTIDE_TOKENS.values()]


class SequenceEncoder:
    """Turns DNA sequences into model inputs according to an :class:`EncodingConfig`.

    ``domain``, ``species`` and ``task`` fill the template fields; the config's own values, when
    set, take precedence over the task's.
    """

    def __init__(
        self,
        tokenizer,
        cfg: EncodingConfig,
        domain: str = "DNA",
        species: Optional[str] = None,
        task: Optional[str] = None,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise EncodingError(
                f"{type(tokenizer).__name__} is a slow tokenizer; LINGO needs a fast (Rust) tokenizer "
                "for character offsets. Load it with use_fast=True."
            )
        self.tokenizer = tokenizer
        self.cfg = cfg
        template = template_for(cfg)
        fields = {
            "domain": cfg.domain or domain,
            "species": cfg.species or species or "unknown",
            "task": cfg.task_description or task or "classification",
        }
        if template.count("{sequence}") != 1:
            raise EncodingError(f"the prefix template must contain {{sequence}} exactly once: {template!r}")
        before, after = template.split("{sequence}")
        try:
            self.text_before = before.format(**fields)
            self.text_after = after.format(**fields)
        except (KeyError, IndexError) as exc:
            raise EncodingError(
                f"unknown field {exc} in prefix template {template!r}; "
                "available fields: {domain}, {species}, {task}, {sequence}"
            ) from None
        if cfg.sequence == "nucleotide":
            missing = [t for t in NUCLEOTIDE_TOKENS.values() if t not in tokenizer.get_vocab()]
            if missing:
                raise EncodingError(
                    "nucleotide encoding needs the tokens added first: call add_nucleotide_tokens(tokenizer) "
                    "(lingo_core.models.load_model does this when encoding.sequence='nucleotide')"
                )
        self.stride = cfg.kmer_stride or cfg.k

    # -- rendering -------------------------------------------------------------------------
    def render_sequence(self, sequence: str) -> tuple[str, np.ndarray]:
        """The sequence part of the text and, per character, the nucleotide index it shows (-1: none).

        For k-mers a character maps to the first nucleotide of its k-mer's *new* bases, so a token
        spanning several characters covers all the nucleotides they show.
        """
        mode = self.cfg.sequence
        if mode == "native":
            return sequence, np.arange(len(sequence))
        if mode == "nucleotide":
            width = len(NUCLEOTIDE_TOKENS["A"])  # all nucleotide tokens have the same length
            text = "".join(NUCLEOTIDE_TOKENS.get(base, NUCLEOTIDE_TOKENS["N"]) for base in sequence)
            return text, np.repeat(np.arange(len(sequence)), width)
        k, stride = self.cfg.k, self.stride
        if stride >= k:  # non-overlapping: the last k-mer may be shorter
            starts = list(range(0, len(sequence), stride))
        else:  # overlapping: full k-mers, plus one covering the tail if the stride skips it
            starts = list(range(0, max(len(sequence) - k, 0) + 1, stride))
            if starts and starts[-1] + k < len(sequence):
                starts.append(len(sequence) - k)
        pieces, char_map = [], []
        for i, start in enumerate(starts):
            kmer = sequence[start : start + k]
            if i:
                pieces.append(" ")
                char_map.append(-1)
            pieces.append(kmer)
            char_map.extend(range(start, start + len(kmer)))
        return "".join(pieces), np.array(char_map, dtype=np.int64)

    def render(self, sequence: str) -> tuple[str, int, np.ndarray]:
        """Full prompt text, the character offset of the sequence part, and its char -> nt map."""
        seq_text, char_map = self.render_sequence(sequence)
        return self.text_before + seq_text + self.text_after, len(self.text_before), char_map

    # -- encoding --------------------------------------------------------------------------
    def encode_with_spans(self, sequence: str) -> EncodedSequence:
        """Encode one sequence and map each token to the nucleotides it covers."""
        return self.encode_many([sequence], with_tokens=True)[0]

    def encode_batch(self, sequences: Sequence[str]) -> tuple[list[list[int]], int]:
        """Token ids (unpadded) for many sequences, and how many had to be truncated to fit.

        Spans are only computed for the sequences that need truncation, so this is the fast path
        used for training and prediction.
        """
        rendered, batch = self._tokenize(sequences)
        ids_out, n_truncated = [], 0
        for i, ids in enumerate(batch["input_ids"]):
            if len(ids) > self.cfg.max_length:
                ids = self._to_encoded(rendered[i], batch, i).input_ids
                n_truncated += 1
            ids_out.append(ids)
        return ids_out, n_truncated

    def encode_many(self, sequences: Sequence[str], with_tokens: bool = False) -> list[EncodedSequence]:
        """Encode sequences with per-token spans and kinds (and token strings when asked)."""
        rendered, batch = self._tokenize(sequences)
        out = []
        for i in range(len(sequences)):
            encoded = self._to_encoded(rendered[i], batch, i)
            if with_tokens:
                encoded.tokens = self.tokenizer.convert_ids_to_tokens(encoded.input_ids)
            out.append(encoded)
        return out

    def _tokenize(self, sequences: Sequence[str]):
        rendered = [self.render(s) for s in sequences]
        batch = self.tokenizer(
            [text for text, _, _ in rendered],
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            truncation=False,
            verbose=False,
        )
        return rendered, batch

    def _to_encoded(self, rendered, batch, i: int) -> EncodedSequence:
        _, seq_start, char_map = rendered
        ids = list(batch["input_ids"][i])
        offsets = np.asarray(batch["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
        special = np.asarray(batch["special_tokens_mask"][i], dtype=bool)
        seq_end = seq_start + len(char_map)
        spans: list[Optional[tuple[int, int]]] = []
        kinds: list[str] = []
        for (a, b), is_special in zip(offsets.tolist(), special.tolist()):
            if is_special or a == b:
                spans.append(None)
                kinds.append(SPECIAL)
                continue
            lo, hi = max(a, seq_start), min(b, seq_end)
            covered = char_map[lo - seq_start : hi - seq_start] if hi > lo else char_map[:0]
            covered = covered[covered >= 0]
            if covered.size:
                spans.append((int(covered.min()), int(covered.max()) + 1))
                kinds.append(SEQUENCE)
            else:
                spans.append(None)
                kinds.append(PROMPT)
        encoded = EncodedSequence(ids, [], spans, kinds, None)
        self._truncate(encoded)
        return encoded

    def _truncate(self, encoded: EncodedSequence) -> None:
        """Drop trailing sequence tokens (never prompt or special tokens) to fit ``max_length``."""
        excess = len(encoded.input_ids) - self.cfg.max_length
        if excess <= 0:
            return
        seq_positions = [i for i, k in enumerate(encoded.kinds) if k == SEQUENCE]
        if len(seq_positions) <= excess:
            raise EncodingError(
                f"encoding.max_length={self.cfg.max_length} leaves no room for the sequence after the "
                f"prompt ({len(encoded.input_ids) - len(seq_positions)} tokens); raise max_length or shorten the prefix"
            )
        drop = set(seq_positions[-excess:])
        first_dropped = min(drop)
        encoded.truncated_at = encoded.spans[first_dropped][0]
        keep = [i for i in range(len(encoded.input_ids)) if i not in drop]
        encoded.input_ids = [encoded.input_ids[i] for i in keep]
        encoded.spans = [encoded.spans[i] for i in keep]
        encoded.kinds = [encoded.kinds[i] for i in keep]

    def max_nucleotides(self, probe_length: int = 2000) -> int:
        """How many nucleotides of a typical sequence fit in ``max_length`` tokens (for sliding windows)."""
        probe = ("ACGTTGCAAGTC" * (probe_length // 12 + 1))[:probe_length]
        encoded = self.encode_many([probe], with_tokens=False)[0]
        return probe_length if encoded.truncated_at is None else encoded.truncated_at

    def token_length_stats(self, sequences: Sequence[str]) -> dict[str, float]:
        """Token counts for a sample of sequences (for choosing max_length and batch sizes)."""
        lengths = np.array([len(ids) for ids in self.encode_batch(sequences)[0]])
        nts = np.array([len(s) for s in sequences])
        return {
            "mean_tokens": float(lengths.mean()),
            "max_tokens": int(lengths.max()),
            "nt_per_token": float(nts.sum() / max(1, lengths.sum())),
        }


def warn_truncation(n_truncated: int, n_total: int, max_length: int) -> None:
    """Warn once when sequences were cut to fit the model window."""
    if n_truncated:
        warnings.warn(
            f"{n_truncated} of {n_total} sequences were longer than encoding.max_length={max_length} tokens "
            "and were truncated at the end (the prompt is kept whole)",
            stacklevel=2,
        )
