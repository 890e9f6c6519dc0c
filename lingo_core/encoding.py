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

Long sequences cost linear time. WordPiece (BERT-style models, the embedded MiniLM) is greedy
longest-match over a whole "word", and a DNA sequence is one word: the tokenizer's own cost grows
much faster than the length (2 kb 0.2 s, 8 kb 12 s). :class:`ChunkedWordPiece` gives exactly the
same tokens in pieces of :data:`CHUNK_CHARS` characters, and stops once the model window
(``max_length``) is full, so encoding a 200 kb sequence costs about what its first window costs.
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
IUPAC_LETTERS = "ACGTNRYSWKMBDHV"  # what a (validated or raw) sequence is made of; both cases are accepted
CHUNK_CHARS = 128  # long WordPiece sequences are tokenised in pieces of this many characters (bench/bench_long_sequences.py)
SLOW_WORD_LIMIT = 4096  # longest sequence tokenised as one WordPiece word when the chunked path does not apply (~1.5 s)

Tokens = tuple[list[int], list[tuple[int, int]], list[int]]  # input ids, character offsets, special-token mask


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


class ChunkedWordPiece:
    """Exactly the tokens a WordPiece tokenizer gives a long sequence, computed in bounded pieces.

    WordPiece is greedy longest-match-first, and the Rust tokenizer tries every end position of a
    word, so one long word costs far more than linear time. The choice at a position only depends
    on the next :attr:`lookahead` characters (the longest vocabulary entry), so the sequence is cut
    into pieces of ``chunk`` characters: the tokens that start at least ``lookahead`` characters
    before a piece's end are those of the whole word, and the next piece starts where the last of
    them ends, tokenised as a continuation (a copy of the vocabulary in which ``xyz`` means ``##xyz``).

    It applies when the sequence is a word of its own in the prompt (the template puts a space,
    newline or punctuation around ``{sequence}``) and the vocabulary has every letter on its own,
    so no position can fail; :meth:`build` checks both, and compares its output with the
    tokenizer's on probe sequences, and returns None when anything differs. One difference is
    deliberate: the tokenizer turns a word longer than its ``max_input_chars_per_word`` into one
    ``[UNK]`` (a limit meant for natural-language words); here a sequence keeps its real tokens at
    any length.
    """

    def __init__(
        self, model, vocab: dict[str, int], text_before: str, text_after: str, allowed: dict[str, str], chunk: int
    ) -> None:
        from tokenizers.models import WordPiece

        prefix = model.continuing_subword_prefix
        self.text_before, self.text_after = text_before, text_after
        self.table = str.maketrans(allowed)  # sequence letter -> normalised letter (e.g. lower case)
        self.allowed = frozenset(allowed)
        self.chunk = chunk
        self.unk_id = vocab[model.unk_token]
        self.first = model
        continuation = {key[len(prefix):]: i for key, i in vocab.items() if key.startswith(prefix)}
        self.lookahead = max(max(map(len, continuation)), max(map(len, vocab)))  # the longest entry, prefix stripped
        continuation.update({prefix + key: i for key, i in continuation.items()})
        continuation[model.unk_token] = self.unk_id
        self.continuation = WordPiece(
            continuation, unk_token=model.unk_token, max_input_chars_per_word=model.max_input_chars_per_word,
            continuing_subword_prefix=prefix,
        )
        self.before: Tokens = ([], [], [])  # the prompt's and special tokens before the sequence ...
        self.after: Tokens = ([], [], [])  # ... and after it (offsets from the sequence's end)

    @classmethod
    def build(cls, tokenizer, text_before: str, text_after: str, chunk: int = CHUNK_CHARS) -> Optional["ChunkedWordPiece"]:
        """A chunker for sequences rendered between ``text_before`` and ``text_after``, or None where it does not apply."""
        from tokenizers.models import WordPiece

        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not isinstance(backend.model, WordPiece):
            return None
        vocab = backend.get_vocab(with_added_tokens=False)
        model = backend.model
        prefix = model.continuing_subword_prefix
        if model.unk_token not in vocab:
            return None

        def normalise(text: str) -> str:
            return backend.normalizer.normalize_str(text) if backend.normalizer is not None else text

        allowed = {}
        for letter in IUPAC_LETTERS + IUPAC_LETTERS.lower():
            norm = normalise(letter)
            if len(norm) == 1 and norm in vocab and prefix + norm in vocab:
                allowed[letter] = norm
        added = [token for token in tokenizer.get_added_vocab() if token and set(token.upper()) <= set(IUPAC_LETTERS)]
        if not allowed or added or chunk <= 2 * max(map(len, vocab)):
            return None
        # the sequence must be one word, cut from the prompt by the pre-tokenizer
        probe = "".join(allowed)
        before, word, after = normalise(text_before), probe.translate(str.maketrans(allowed)), normalise(text_after)
        whole = normalise(text_before + probe + text_after)
        if whole != before + word + after:
            return None
        splits = backend.pre_tokenizer.pre_tokenize_str(whole) if backend.pre_tokenizer is not None else [(whole, (0, len(whole)))]
        if (word, (len(before), len(before) + len(word))) not in [(text, tuple(span)) for text, span in splits]:
            return None
        chunker = cls(model, vocab, text_before, text_after, allowed, chunk)
        if not chunker._split_template(tokenizer, probe):
            return None
        # the proof of the pudding: the tokenizer's own answer on probes that cross many pieces
        rng = np.random.default_rng(0)
        probes = [
            "".join(rng.choice(list("ACGT"), size=3 * chunk + 37)),
            ("ACACACACGT" * chunk)[: 2 * chunk + 3] + "N" * 40 + "acgtRYKM" * 10,
        ]
        for sequence in (p for p in probes if set(p) <= chunker.allowed):
            expected = tokenizer(text_before + sequence + text_after, return_offsets_mapping=True,
                                 return_special_tokens_mask=True, truncation=False, verbose=False)
            ids, offsets, special = chunker.encode(sequence)
            if (ids, offsets, special) != (list(expected["input_ids"]), [tuple(o) for o in expected["offset_mapping"]],
                                           list(expected["special_tokens_mask"])):
                return None
        return chunker

    def _split_template(self, tokenizer, probe: str) -> bool:
        """Keep the template's own tokens (prompt and special tokens) before and after the sequence."""
        start = len(self.text_before)
        end = start + len(probe)
        enc = tokenizer(self.text_before + probe + self.text_after, return_offsets_mapping=True,
                        return_special_tokens_mask=True, truncation=False, verbose=False)
        inside = []
        for i, ((a, b), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
            if special or a == b:
                continue
            if start <= a and b <= end:
                inside.append(i)
            elif a < end and b > start:  # a token across the sequence's edge: not a word of its own
                return False
        if not inside or inside != list(range(inside[0], inside[-1] + 1)):
            return False
        ids, offsets, specials = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]], list(enc["special_tokens_mask"])
        first, last = inside[0], inside[-1] + 1
        self.before = (ids[:first], offsets[:first], specials[:first])
        after_offsets = [(a, b) if s or a == b else (a - end, b - end) for (a, b), s in zip(offsets[last:], specials[last:])]
        self.after = (ids[last:], after_offsets, specials[last:])
        return True

    @property
    def template_tokens(self) -> int:
        """Tokens of the prompt and special tokens around the sequence."""
        return len(self.before[0]) + len(self.after[0])

    def applies(self, sequence: str) -> bool:
        """Whether ``sequence`` goes through the chunked path (long, and only letters it was checked for)."""
        return len(sequence) > self.chunk and set(sequence) <= self.allowed

    def encode(self, sequence: str, max_sequence_tokens: Optional[int] = None) -> Tokens:
        """Ids, offsets and special-token mask of the rendered prompt, as the tokenizer gives them.

        With ``max_sequence_tokens`` only the first that many sequence tokens are made (what a
        window of ``max_length`` can hold, plus one to know that the rest was cut).
        """
        start = len(self.text_before)
        end = start + len(sequence)
        pieces = self.tokenize_word(sequence.translate(self.table), max_sequence_tokens)
        ids = self.before[0] + [i for i, _, _ in pieces] + self.after[0]
        offsets = (
            self.before[1]
            + [(start + a, start + b) for _, a, b in pieces]
            + [(a, b) if s or a == b else (end + a, end + b) for (a, b), s in zip(self.after[1], self.after[2])]
        )
        special = self.before[2] + [0] * len(pieces) + self.after[2]
        return ids, offsets, special

    def tokenize_word(self, word: str, max_tokens: Optional[int] = None) -> list[tuple[int, int, int]]:
        """``(id, start, end)`` of every WordPiece token of one normalised word (the first ``max_tokens``)."""
        n = len(word)
        out: list[tuple[int, int, int]] = []
        pos = 0
        while pos < n and (max_tokens is None or len(out) < max_tokens):
            end = min(n, pos + self.chunk)
            model = self.first if pos == 0 else self.continuation
            tokens = model.tokenize(word[pos:end])
            last_safe = end - pos - self.lookahead if end < n else end - pos  # later starts may change with more text
            for token in tokens:
                a, b = token.offsets
                if a > last_safe:
                    break
                out.append((token.id, pos + a, pos + b))
            pos = out[-1][2]
        return out if max_tokens is None else out[:max_tokens]


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
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._one_word = cfg.sequence == "native" and type(getattr(backend, "model", None)).__name__ == "WordPiece"
        self.chunker = ChunkedWordPiece.build(tokenizer, self.text_before, self.text_after) if self._one_word else None

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
        rendered, tokens = self._tokenize(sequences)
        ids_out, n_truncated = [], 0
        for i, (ids, _, _) in enumerate(tokens):
            if len(ids) > self.cfg.max_length:
                ids = self._to_encoded(rendered[i], tokens[i]).input_ids
                n_truncated += 1
            ids_out.append(ids)
        return ids_out, n_truncated

    def encode_many(self, sequences: Sequence[str], with_tokens: bool = False) -> list[EncodedSequence]:
        """Encode sequences with per-token spans and kinds (and token strings when asked)."""
        rendered, tokens = self._tokenize(sequences)
        out = []
        for i in range(len(sequences)):
            encoded = self._to_encoded(rendered[i], tokens[i])
            if with_tokens:
                encoded.tokens = self.tokenizer.convert_ids_to_tokens(encoded.input_ids)
            out.append(encoded)
        return out

    def _tokenize(self, sequences: Sequence[str]) -> tuple[list[tuple[str, int, np.ndarray]], list[Tokens]]:
        """Rendered prompts and their tokens (ids, character offsets, special-token mask).

        Long sequences that :class:`ChunkedWordPiece` handles are tokenised in pieces, and only
        as far as ``max_length`` can hold; everything else in one batch call to the tokenizer.
        """
        rendered = [self.render(s) for s in sequences]
        tokens: list[Optional[Tokens]] = [None] * len(sequences)
        plain = []
        for i, sequence in enumerate(sequences):
            if self.chunker is not None and self.chunker.applies(sequence):
                budget = max(self.cfg.max_length - self.chunker.template_tokens, 0) + 1
                tokens[i] = self.chunker.encode(sequence, budget)
            elif self._one_word and len(sequence) > SLOW_WORD_LIMIT:
                raise EncodingError(
                    f"a {len(sequence):,} nt sequence would be tokenised as one WordPiece word, whose cost grows much "
                    f"faster than its length; pieces of {CHUNK_CHARS} characters need the sequence to stand alone in "
                    f"the prompt and hold only IUPAC letters, and this one or the template {template_for(self.cfg)!r} "
                    "does not. Fix: put a space or newline on both sides of {sequence} in encoding.prefix, or cut "
                    f"the sequence below {SLOW_WORD_LIMIT:,} nt"
                )
            else:
                plain.append(i)
        if plain:
            batch = self.tokenizer(
                [rendered[i][0] for i in plain],
                add_special_tokens=True,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
                truncation=False,
                verbose=False,
            )
            for k, i in enumerate(plain):
                tokens[i] = (list(batch["input_ids"][k]), batch["offset_mapping"][k], batch["special_tokens_mask"][k])
        return rendered, tokens  # type: ignore[return-value]

    def _to_encoded(self, rendered: tuple[str, int, np.ndarray], tokens: Tokens) -> EncodedSequence:
        _, seq_start, char_map = rendered
        ids = list(tokens[0])
        offsets = np.asarray(tokens[1], dtype=np.int64).reshape(-1, 2)
        special = np.asarray(tokens[2], dtype=bool)
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
