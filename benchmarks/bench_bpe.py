"""BPE training and encoding: naive reference vs lmcore vs Hugging Face ``tokenizers``, one run.

Training: the corpus (Tiny Shakespeare when present, else the toy language's training split) to
vocabulary sizes 512, 1024 and 4096.  The naive reference is the notes' algorithm from
``tests/test_bpe.py`` (recount every pair before each merge); it is skipped above ``--naive-max``
(default 1024) because it would take many minutes, and the table says so.  Merge lists of lmcore
and the reference are compared for identity.  Encoding: MB/s on the whole corpus.

    python benchmarks/bench_bpe.py [--json] [--naive-max 1024]
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from _common import benchmark_parser, machine_info, report

from lmcore.data import toy_corpus
from lmcore.tokenizers import BPETokenizer

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def _naive():
    spec = importlib.util.spec_from_file_location("test_bpe", ROOT / "tests" / "test_bpe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.naive_bpe_merges


def _hf_train(text: str, vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([text], trainer)
    return hf


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--naive-max", type=int, default=1024,
                        help="largest vocabulary size the naive reference is run at")
    args = parser.parse_args()
    if SHAKESPEARE.is_file():
        corpus, text = "tinyshakespeare", SHAKESPEARE.read_text(encoding="utf-8")
    else:
        corpus, text = "toy", toy_corpus("train")
    naive = _naive()
    rows = []
    tokenizers = {}
    for vocab_size in (512, 1024, 4096):
        ours, t_ours = _timed(lambda: BPETokenizer().train(text, vocab_size))
        hf, t_hf = _timed(lambda: _hf_train(text, vocab_size))
        tokenizers[vocab_size] = (ours, hf)
        row = {"corpus": corpus, "vocab": vocab_size}
        if vocab_size <= args.naive_max:
            ref, t_naive = _timed(lambda: naive(text, vocab_size))
            row.update({"naive s": t_naive, "lmcore s": t_ours, "tokenizers s": t_hf,
                        "naive/lmcore": t_naive / t_ours, "lmcore/tokenizers": t_ours / t_hf,
                        "identical merges": ref == ours.merges})
        else:
            row.update({"naive s": "skipped", "lmcore s": t_ours, "tokenizers s": t_hf,
                        "naive/lmcore": "skipped", "lmcore/tokenizers": t_ours / t_hf,
                        "identical merges": "n/a"})
        rows.append(row)
    report(rows, args, title=f"BPE training ({len(text.encode()):,} bytes)", meta=machine_info())

    mb = len(text.encode()) / 1e6
    enc_rows = []
    lines = text.splitlines(keepends=True)
    for vocab_size, (ours, hf) in tokenizers.items():
        ours._cache.clear()  # time a cold cache: every distinct pre-token encoded once
        ids, t_ours = _timed(lambda: ours.encode(text))
        _, t_hf = _timed(lambda: hf.encode(text))
        _, t_hf_batch = _timed(lambda: hf.encode_batch(lines))
        enc_rows.append({"vocab": vocab_size, "lmcore MB/s": mb / t_ours, "tokenizers MB/s": mb / t_hf,
                         "tokenizers batch MB/s": mb / t_hf_batch,
                         "lmcore/tokenizers speed": t_hf / t_ours, "tokens per byte": len(ids) / (mb * 1e6)})
    if not args.json:
        print()
    report(enc_rows, args, title="Encoding the whole corpus (lmcore: one call, cold cache; "
                                 "tokenizers: one call, and encode_batch over lines)", meta=machine_info())


if __name__ == "__main__":
    main()
