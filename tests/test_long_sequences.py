"""Long sequences in linear time, and predictions streamed in bounded memory (issue 12, items 4 and 5).

Encoding: the chunked WordPiece path must give exactly the tokenizer's own tokens and spans, stop at
the model window, and cost work proportional to what it reads (counted, not timed). Training data:
a record far longer than any window is refused at load, naming it. Prediction: records are read,
scored and written chunk by chunk; the output file appears only when complete.
"""

from __future__ import annotations

import gzip
import io
import os
import sys

import numpy as np
import pandas as pd
import pytest

from lingo_core.config import ConfigError, DataConfig, EncodingConfig, ModelConfig
from lingo_core.data import DataError, load_task, make_demo_task
from lingo_core.data.validation import MAX_TRAINING_SEQUENCE_NT
from lingo_core.encoding import CHUNK_CHARS, SEQUENCE, SLOW_WORD_LIMIT, EncodingError, SequenceEncoder
from lingo_core.models import load_model
from lingo_core.predict import PredictionWriter, Predictions, ProgressLine, load_predictor
from lingo_core.sequence_input import (
    InputRecord,
    iter_csv_input,
    iter_fasta_input,
    iter_inputs,
    parse_fasta_records,
    read_csv_input,
    records_from_sequences,
)
from lingo_core.train import train
from tests.helpers import tiny_config

DEMO = make_demo_task(n_train=4, n_dev=4, n_test=40, seed=321)
RNG = np.random.default_rng(12)


def random_dna(n: int, alphabet: str = "ACGT") -> str:
    return "".join(RNG.choice(list(alphabet), size=n))


@pytest.fixture(scope="module")
def tokenizer():
    """The embedded MiniLM's WordPiece tokenizer, as the model registry configures it."""
    return load_model(ModelConfig(), 2, empty=True).tokenizer


def reference(tokenizer, encoder: SequenceEncoder, sequence: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The tokenizer's own answer on the whole prompt: ids, and the nucleotide span of every sequence token."""
    text, start, _ = encoder.render(sequence)
    out = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True, truncation=False, verbose=False)
    spans = [
        (a - start, b - start)
        for (a, b), special in zip(out["offset_mapping"], out["special_tokens_mask"])
        if not special and start <= a < start + len(sequence)
    ]
    return list(out["input_ids"]), spans


# --------------------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("prefix", ["paper", "rich", "none"])
def test_chunked_tokens_and_spans_are_the_tokenizers_own(tokenizer, prefix):
    encoder = SequenceEncoder(tokenizer, EncodingConfig(prefix=prefix, max_length=100_000), domain="DNA Promoter")
    assert encoder.chunker is not None
    sequences = [
        random_dna(CHUNK_CHARS + 1),
        random_dna(3000),
        ("CA" * 1500)[:2999],  # a microsatellite: greedy matches never re-align by themselves
        random_dna(700, "ACGTN") + "N" * 300 + "TTAGGG" * 150,
        "".join(RNG.choice(["ACGT", "AAAA", "CCG", "T", "GATTACA", "cantata".upper()], size=600)),
        random_dna(1000).lower() + random_dna(500, "ACGTRYKM"),
    ]
    for sequence in sequences:
        assert encoder.chunker.applies(sequence) and len(sequence) < SLOW_WORD_LIMIT  # the tokenizer alone still answers
        encoded = encoder.encode_with_spans(sequence)
        ids, spans = reference(tokenizer, encoder, sequence)
        assert encoded.input_ids == ids and encoded.truncated_at is None
        assert [s for s, k in zip(encoded.spans, encoded.kinds) if k == SEQUENCE] == spans
        assert spans[0][0] == 0 and spans[-1][1] == len(sequence)
        assert all(b == c for (_, b), (c, _) in zip(spans, spans[1:]))  # every nucleotide exactly once, in order


def test_truncated_encoding_of_a_long_sequence_is_that_of_its_first_window(tokenizer):
    encoder = SequenceEncoder(tokenizer, EncodingConfig(max_length=512), domain="DNA Promoter")
    long = random_dna(200_000)
    encoded = encoder.encode_with_spans(long)
    assert len(encoded.input_ids) == 512 and encoded.truncated_at is not None
    # expectation from the tokenizer alone, on a prefix long enough to be cut at the same token:
    # the prompt whole, the first `kept` sequence tokens, and the cut where the next token starts
    ids, spans = reference(tokenizer, encoder, long[:3000])
    first = encoder.encode_with_spans("ACGT").kinds.index(SEQUENCE)  # tokens before the sequence
    kept = 512 - (len(ids) - len(spans))
    assert encoded.input_ids == ids[:first] + ids[first : first + kept] + ids[first + len(spans) :]
    assert [s for s, k in zip(encoded.spans, encoded.kinds) if k == SEQUENCE] == spans[:kept]
    assert encoded.truncated_at == spans[kept][0]
    assert "[UNK]" not in tokenizer.convert_ids_to_tokens(encoded.input_ids)  # above the tokenizer's word limit too
    ids_only, n_truncated = encoder.encode_batch([long, long[:3000]])
    assert n_truncated == 2 and ids_only[0] == ids_only[1] == encoded.input_ids


def test_encoding_work_is_bounded_by_the_window_and_linear_in_length(tokenizer):
    """Work is counted as characters handed to the tokenizer, in pieces of at most CHUNK_CHARS."""
    pieces: list[int] = []

    def counting(model):
        class Counting:
            def tokenize(self, text):
                pieces.append(len(text))
                return model.tokenize(text)

        return Counting()

    def work(encoder: SequenceEncoder, sequence: str) -> int:
        pieces.clear()
        encoder.encode_batch([sequence])
        assert max(pieces) <= CHUNK_CHARS
        return sum(pieces)

    windowed = SequenceEncoder(tokenizer, EncodingConfig(max_length=512), domain="DNA Promoter")
    whole = SequenceEncoder(tokenizer, EncodingConfig(max_length=10**7), domain="DNA Promoter")
    for encoder in (windowed, whole):
        encoder.chunker.first = counting(encoder.chunker.first)
        encoder.chunker.continuation = counting(encoder.chunker.continuation)
    sequence = random_dna(200_000)
    # truncated to the model window: the same work for 5 kb and 200 kb, about one window's worth of text
    assert work(windowed, sequence[:5000]) == work(windowed, sequence) < 2 * windowed.max_nucleotides()
    # no window limit: characters tokenised grow in proportion to the length (overlap of pieces < 30 %)
    small, large = work(whole, sequence[:20_000]), work(whole, sequence)
    assert 20_000 <= small < 1.3 * 20_000 and 200_000 <= large < 1.3 * 200_000
    assert 9.5 < large / small < 10.5


def test_a_template_that_glues_text_to_the_sequence_falls_back_and_refuses_huge_words(tokenizer):
    glued = SequenceEncoder(tokenizer, EncodingConfig(prefix="DNA{sequence}"))
    assert glued.chunker is None  # "dnaACGT..." is one word with the prompt: not the sequence alone
    short = random_dna(500)
    assert glued.encode_batch([short])[0][0] == tokenizer(glued.render(short)[0])["input_ids"]
    with pytest.raises(EncodingError, match=r"5,000 nt.*Fix: put a space or newline on both sides of \{sequence\}"):
        glued.encode_batch([random_dna(5000)])
    # k-mers and nucleotide tokens are short words: no chunking needed, and no limit
    kmers = SequenceEncoder(tokenizer, EncodingConfig(sequence="kmer", k=6, max_length=512))
    assert kmers.chunker is None and kmers.encode_with_spans(random_dna(50_000)).truncated_at is not None


# --------------------------------------------------------------------------------------- training data


def test_a_100_kb_training_row_is_refused_at_load_with_where_and_how(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    rows = ["sequence,label"] + [f"{s},{i % 2}" for i, s in enumerate(DEMO.test.sequences[:10])]
    rows[4] = f"{random_dna(100_000)},1"  # line 5 of the file
    rows[7] = f"{random_dna(150_000)},0"
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as caught:
        load_task(DataConfig(task=str(folder)))
    message = str(caught.value)
    assert f"{folder / 'train.csv'}, line 5: the sequence has 100,000 nt" in message
    assert f"more than the {MAX_TRAINING_SEQUENCE_NT:,} nt" in message and "2 records of this file are" in message
    assert "150,000 nt" in message and "Fix: cut such records" in message and "lingo_core predict" in message

    fasta = tmp_path / "long.fa"
    fasta.write_text("".join(f">s{i}|{i % 2}\n{s}\n" for i, s in enumerate(DEMO.test.sequences[:6])) + f">chr1|1\n{random_dna(25_000)}\n")
    with pytest.raises(DataError, match=r"long\.fa, record 'chr1': the sequence has 25,000 nt"):
        load_task(DataConfig(task=str(fasta)))


# --------------------------------------------------------------------------------------- prediction


@pytest.fixture(scope="module")
def predictor(tiny_bert_dir, tmp_path_factory):
    """A 4-step LoRA run of the tiny BERT (max_length 128 tokens, fp32 so batch composition cannot matter)."""
    out = tmp_path_factory.mktemp("long_runs")
    run = train(tiny_config(tiny_bert_dir, out, "lora", model={"dtype": "float32"}, train={"max_steps": 4, "eval_every": 4}))
    return load_predictor(run)


def test_predicting_a_long_sequence_costs_its_windows(predictor):
    encoder = predictor.encoder
    handed: list[int] = []
    model = encoder.chunker.first, encoder.chunker.continuation

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def tokenize(self, text):
            handed.append(len(text))
            return self.inner.tokenize(text)

    encoder.chunker.first, encoder.chunker.continuation = Counting(model[0]), Counting(model[1])
    try:
        long = random_dna(6_000)
        window, stride = 200, 100  # about 100 tokens: fits the run's 128
        row = predictor.predict([long], window=window, stride=stride).rows[0]
        starts = list(range(0, len(long) - window + 1, stride))
        assert row.n_windows == len(starts) and row.windows_truncated == 0
        # every window tokenised once (plus the overlap of its pieces); nothing else of the 6 kb
        assert sum(handed) < 1.3 * window * len(starts)
        handed.clear()
        default = predictor.predict([long]).rows[0]  # default window: the whole sequence is tried first, up to the window
        assert default.n_windows > 1 and sum(handed) < 1.3 * predictor.window_nt * (default.n_windows + 2)
    finally:
        encoder.chunker.first, encoder.chunker.continuation = model
    # the aggregated probabilities are those of the windows, scored one by one
    sub = long[:1500]
    got = predictor.predict([sub], window=window, stride=stride).rows[0].probabilities
    expected = predictor.probabilities([sub[s : s + window] for s in range(0, len(sub) - window + 1, stride)], batch_size=1)
    np.testing.assert_allclose(got, expected.mean(axis=0), atol=1e-5)


def test_attributing_a_long_sequence_refuses_at_once_with_where_it_was_cut(predictor):
    from lingo_core.attribution import AttributionError, in_silico_mutagenesis, integrated_gradients

    long = random_dna(200_000)
    cut = predictor.encoder.encode_with_spans(long).truncated_at
    for method in (integrated_gradients, in_silico_mutagenesis):
        with pytest.raises(AttributionError, match=rf"200000 nt\) does not fit .* sequence\[:{cut}\]"):
            method(predictor, long)


def test_a_sequence_shorter_than_the_window_that_does_not_fit_is_one_cut_window(predictor):
    sequence = random_dna(600)  # about 300 tokens: more than 128
    saved = predictor._max_nucleotides
    predictor._max_nucleotides = 2000  # an estimate that was too generous: the window is longer than the sequence
    try:
        row = predictor.predict([sequence]).rows[0]
    finally:
        predictor._max_nucleotides = saved
    assert row.error is None and row.n_windows == 1 and row.windows_truncated == 1


def counted(records: list[InputRecord], pulled: list[int]):
    """Yield ``records``, noting in ``pulled`` how many have been read so far."""
    for record in records:
        pulled.append(1)
        yield record


def test_stream_reads_lazily_flags_duplicates_across_chunks_and_matches_predict(predictor):
    sequences = DEMO.test.sequences[:23] + ["ACGTXX"] + [DEMO.test.sequences[0] * 9]  # a bad one, a windowed one
    records = records_from_sequences(sequences)
    records[20].id = records[3].id  # a duplicate in a later chunk
    pulled: list[int] = []
    stream = predictor.predict_stream(counted(records, pulled), chunk_records=6)
    assert not pulled  # nothing is read before the first chunk is asked for
    chunks = []
    for chunk in stream:
        assert len(pulled) <= 6 * (len(chunks) + 1)  # at most one chunk read ahead of what was scored
        chunks.append(chunk)
    assert [len(c) for c in chunks] == [6, 6, 6, 6, 1]
    streamed = pd.concat([c.to_frame() for c in chunks], ignore_index=True)
    whole = predictor.predict(records).to_frame()
    probs = [c for c in whole if c.startswith("prob_")]
    pd.testing.assert_frame_equal(streamed.drop(columns=probs), whole.drop(columns=probs))
    np.testing.assert_allclose(streamed[probs].to_numpy(), whole[probs].to_numpy(), atol=1e-5)
    assert streamed["duplicate_id"].tolist() == [i == 20 for i in range(len(records))]
    assert streamed.loc[23, "error"] != "" and streamed.loc[24, "n_windows"] > 1
    with pytest.raises(DataError, match=r"duplicate id \(also record 4\)"):
        list(predictor.predict_stream(iter(records), chunk_records=6, strict=True, window=None))
    # by nucleotides as well: a chunk closes once it holds chunk_nt
    assert [len(c) for c in predictor.predict_stream(iter(records[:6]), chunk_nt=250)] == [3, 3]
    assert [len(c) for c in predictor.predict_stream(iter([]))] == [0]
    with pytest.raises(ValueError, match="stride 400 nt is larger than the window 300 nt"):
        predictor.predict_stream(iter(records), window=300, stride=400)  # options are checked before reading


@pytest.mark.parametrize("suffix", ["csv", "json"])
def test_writer_writes_rows_as_they_come_and_the_file_appears_only_when_complete(predictor, tmp_path, suffix):
    records = records_from_sequences(DEMO.test.sequences[:12] + ["NNNN", "AC GT!"])
    chunks = list(predictor.predict_stream(iter(records), chunk_records=5))
    out = tmp_path / f"scores.{suffix}"
    out.write_text("an earlier file\n")
    with PredictionWriter(out) as writer:
        partial = writer.partial_path
        assert partial.parent == tmp_path and partial.name.endswith(".partial")
        for k, chunk in enumerate(chunks, start=1):
            writer.write(chunk)
            if suffix == "csv":  # rows are on disk as soon as their chunk is scored
                assert len(partial.read_text().splitlines()) == 1 + min(5 * k, len(records))
            assert out.read_text() == "an earlier file\n"  # the old file stays until the new one is complete
    assert not partial.exists() and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    together = Predictions(
        [row for chunk in chunks for row in chunk.rows], *[getattr(chunks[0], f) for f in (
            "label_names", "multi_label", "aggregation", "reverse_complement", "window_nt", "stride_nt", "run_dir", "source")]
    )
    reference_file = tmp_path / "reference" / out.name
    reference_file.parent.mkdir()
    (together.to_csv if suffix == "csv" else together.to_json)(reference_file)
    assert out.read_bytes() == reference_file.read_bytes()  # byte for byte what writing all rows at once gives


def test_a_failure_leaves_no_output_and_a_bad_path_fails_before_scoring(predictor, tmp_path):
    out = tmp_path / "scores.csv"
    records = records_from_sequences(DEMO.test.sequences[:10])
    with pytest.raises(RuntimeError, match="disk gone"):
        with PredictionWriter(out) as writer:
            for k, chunk in enumerate(predictor.predict_stream(iter(records), chunk_records=4)):
                writer.write(chunk)
                if k == 1:
                    raise RuntimeError("disk gone")
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary file
    with pytest.raises(ConfigError, match=r"the folder .*missing does not exist\. Fix: create it"):
        PredictionWriter(tmp_path / "missing" / "scores.csv")
    with pytest.raises(ConfigError, match=r"is a folder\. Fix: give a file name"):
        PredictionWriter(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown output format '\.xlsx'"):
        PredictionWriter(tmp_path / "scores.xlsx")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="cannot write in"):
            PredictionWriter(locked / "scores.csv")


def test_progress_line(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())  # what the CLI writes to: it passes no stream
    assert ProgressLine(10).tty
    screen = Terminal()
    progress = ProgressLine(10, screen)
    progress.update(4, 4000)
    progress.update(6, 6000)
    progress.close()
    assert "\rpredict: 4/10 records, 0.00 Mb" in screen.getvalue() and "left" in screen.getvalue()
    assert screen.getvalue().endswith("predict: 10/10 records, 0.01 Mb, 0 s\n")
    log = io.StringIO()
    quiet = ProgressLine(None, log, every=3600)
    quiet.update(5, 500)
    quiet.close()
    assert log.getvalue() == ""  # not a terminal: a line only every `every` seconds
    chatty = ProgressLine(None, log, every=0)
    chatty.update(5, 500)
    assert log.getvalue() == "predict: 5 records, 0.00 Mb, 0 s\n"


def test_streamed_readers_read_what_the_whole_file_readers_read(tmp_path):
    seqs = DEMO.test.sequences
    text = "\ufeff>a desc\r\n" + seqs[0][:30] + "\r\n" + seqs[0][30:] + "\r\n>\r\nACGT\r\n\r\n>b\r\n>c\r\n" + seqs[1] + "\r\n"
    plain = tmp_path / "in.fa"
    plain.write_bytes(text.encode("utf-8"))
    packed = tmp_path / "in.fa.gz"
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    expected = parse_fasta_records(text.lstrip("\ufeff"), str(plain))
    assert [r.id for r in expected] == ["a", "record2", "b", "c"] and expected[1].error
    assert list(iter_fasta_input(plain)) == expected
    from_packed = [(r.id, r.sequence, r.where, r.error) for r in iter_fasta_input(packed)]
    assert from_packed == [(r.id, r.sequence, r.where, r.error) for r in parse_fasta_records(text, str(packed))]
    with pytest.raises(DataError, match="FASTA file not found"):
        iter_fasta_input(tmp_path / "nope.fa")  # at once, not when first read
    empty = tmp_path / "empty.fa"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no FASTA records"):
        list(iter_fasta_input(empty))

    table = tmp_path / "in.csv"
    table.write_text("id,sequence\n" + "".join(f"r{i},{s}\n" + ("\n" if i % 3 == 0 else "") for i, s in enumerate(seqs[:10])))
    assert list(iter_csv_input(table, chunk_rows=4)) == read_csv_input(table)
    with pytest.raises(DataError, match="no column 'seq'"):
        iter_csv_input(table, sequence_column="seq")
    assert [r.id for r in iter_inputs(["ACGT", "GG"])] == ["seq1", "seq2"]


def test_cli_streams_a_fasta_in_chunks_and_leaves_nothing_behind_on_failure(predictor, tmp_path, capsys):
    from lingo_core.cli import main

    run_dir = str(predictor.trained.run.path)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(DEMO.test.sequences[:30])) + ">bad\nACGTXX\n")
    out = tmp_path / "out.csv"
    assert main(["predict", run_dir, "--fasta", str(fasta), "--out", str(out), "--chunk-size", "7"]) == 0
    captured = capsys.readouterr()
    assert "scored 30 of 31 records" in captured.err and "not scored:" in captured.err and captured.out.strip() == str(out)
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["id"].tolist() == [f"r{i}" for i in range(30)] + ["bad"]
    expected = predictor.predict(parse_fasta_records(fasta.read_text(), str(fasta))).to_frame()
    np.testing.assert_allclose(frame["prob_positive"][:30].astype(float), expected["prob_positive"][:30], atol=1e-5)

    # the bad record stops a strict run in its fifth chunk: nothing is left, the earlier output is untouched
    before = out.read_bytes()
    assert main(["predict", run_dir, "--fasta", str(fasta), "--out", str(out), "--chunk-size", "7", "--strict"]) == 2
    assert "record 'bad'" in capsys.readouterr().err
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.fa", "out.csv"]

    # nothing scored is a failure, not a success with an empty table
    only_bad = tmp_path / "bad.fa"
    only_bad.write_text(">bad1\nACGTXX\n>bad2\nNNZZ\n")
    assert main(["predict", run_dir, "--fasta", str(only_bad), "--out", str(tmp_path / "bad.csv")]) == 1
    assert "no record was scored" in capsys.readouterr().err
    assert not (tmp_path / "bad.csv").exists()
