"""N-gram fit and perplexity time for n = 1 … 5 on 1 MB of text, per estimator, in one run.

Characters of the toy language (training split, first 1,000,000 characters) are counted; the
validation split (~140,000 characters) is scored.  The peer for fitting is the obvious pure-Python
count, ``collections.Counter`` over tuples of ids (what a reader would write first).

    python benchmarks/bench_ngram.py [--json]
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
from _common import benchmark_parser, machine_info, report

from lmcore import CharTokenizer
from lmcore.data import toy_corpus
from lmcore.models.ngram import NGramConfig, NGramLM


def main() -> None:
    args = benchmark_parser(__doc__.splitlines()[0]).parse_args()
    train, val = toy_corpus("train")[:1_000_000], toy_corpus("val")
    tok = CharTokenizer().train(train + val)
    a, b = np.array(tok.encode(train)), np.array(tok.encode(val))
    rows = []
    ids = a.tolist()
    for n in range(1, 6):
        t0 = time.perf_counter()
        Counter(zip(*(ids[j:] for j in range(n))))
        t_counter = time.perf_counter() - t0
        for smoothing in ("add-eps", "kneser-ney"):
            lm = NGramLM(NGramConfig(n, tok.vocab_size, smoothing=smoothing, eps=0.01))
            t0 = time.perf_counter()
            lm.fit(a)
            t_fit = time.perf_counter() - t0
            t0 = time.perf_counter()
            ppl = lm.perplexity(b)
            t_ppl = time.perf_counter() - t0
            rows.append({"n": n, "smoothing": smoothing, "fit s": t_fit, "fit MB/s": len(a) / 1e6 / t_fit,
                         "Counter fit s": t_counter, "Counter/lmcore fit": t_counter / t_fit,
                         "perplexity s": t_ppl, "scored tokens/s": len(b) / t_ppl,
                         "val perplexity": ppl, "distinct n-grams": lm.num_ngrams()})
    report(rows, args, title=f"n-gram fit on {len(a):,} characters, perplexity on {len(b):,}",
           meta=machine_info())


if __name__ == "__main__":
    main()
