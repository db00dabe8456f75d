"""KV-cache generation: identical to the uncached path and to a naive loop; windows, stops, bad input."""
import pytest
import torch

from lmcore import GPT, GPTConfig, KVCache, kv_cache_bytes
from lmcore.decoding import generation
from lmcore.decoding.generation import context_window_start, generate

POS = ["learned", "sinusoidal", "rope", "alibi", "none"]


def model_for(pos="learned", seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    kw = dict(vocab_size=29, context_length=16, n_layer=2, n_head=4, n_embd=32, pos_encoding=pos,
              tie_weights=False)
    kw.update(overrides)
    model = GPT(GPTConfig(**kw)).eval()
    with torch.no_grad():   # larger weights than the N(0, 0.02) init, so greedy text is not constant
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(25)
    return model


def sample_both(model, prompt, n, **kw):
    outs, states = [], []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(1234)
        outs.append(generate(model, prompt, n, use_cache=use_cache, generator=g, **kw))
        states.append(g.get_state())
    return outs, states


CASES = [dict(pos=p) for p in POS] + [dict(pos="rope", n_kv_head=1), dict(pos="alibi", n_kv_head=2),
                                      dict(pos="learned", n_kv_head=2, norm="post")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_cached_equals_uncached_greedy_and_sampled_beyond_context_length(case):
    model = model_for(**case)
    prompt = torch.randint(0, 29, (2, 5))
    # 40 new tokens with context_length 16: the window restarts several times
    (cached, uncached), _ = sample_both(model, prompt, 40, temperature=0)
    assert torch.equal(cached, uncached)
    (cached, uncached), (g1, g2) = sample_both(model, prompt, 40, temperature=1.5, top_k=20, top_p=0.95)
    assert torch.equal(cached, uncached)
    assert len(set(cached[:, 5:].flatten().tolist())) > 5   # a varied sample, not a constant sequence
    assert torch.equal(g1, g2)                            # the same random numbers were consumed


@pytest.mark.parametrize("pos", POS)
def test_cached_forward_in_chunks_equals_full_forward(pos):
    model = model_for(pos)
    idx = torch.randint(0, 29, (2, 16))
    full, _ = model(idx)
    cache = model.make_cache(2)
    chunks = [model(idx[:, a:b], kv_cache=cache)[0] for a, b in [(0, 5), (5, 6), (6, 11), (11, 16)]]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 16


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_greedy_matches_a_naive_argmax_loop(pos):
    """Within context_length: re-run the model on the whole sequence and take the arg-max, by hand."""
    model = model_for(pos)
    seq = torch.randint(0, 29, (1, 3))
    expected = seq.clone()
    with torch.no_grad():
        for _ in range(13):
            logits, _ = model(expected)
            expected = torch.cat([expected, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generate(model, seq, 13, temperature=0), expected)


def test_window_policy_restarts_on_the_last_half_block():
    assert context_window_start(16, 0, 16) == 0
    assert context_window_start(17, 0, 16) == 9          # restart: last 8 tokens
    assert context_window_start(20, 9, 16) == 9
    assert context_window_start(26, 9, 16) == 18
    assert context_window_start(5, 0, 1) == 4


def test_long_prompt_is_cropped_to_the_last_context_length_tokens():
    model = model_for("learned")
    long_prompt = torch.randint(0, 29, (1, 30))
    out = generate(model, long_prompt, 5, temperature=0)
    cropped = generate(model, long_prompt[:, -16:], 5, temperature=0)
    assert torch.equal(out[:, :30], long_prompt)
    assert torch.equal(out[:, 30:], cropped[:, 16:])


def test_cache_buffers_are_preallocated_and_written_in_place():
    model = model_for("rope", n_kv_head=2)
    cache = model.make_cache(3)
    ptrs = [t.data_ptr() for t in cache.keys + cache.values]
    assert cache.keys[0].shape == (3, 2, 16, 8)
    model(torch.randint(0, 29, (3, 4)), kv_cache=cache)
    for _ in range(5):
        model(torch.randint(0, 29, (3, 1)), kv_cache=cache)
    assert cache.length == 9
    assert [t.data_ptr() for t in cache.keys + cache.values] == ptrs
    assert cache.keys[1][:, :, 9:].abs().sum() == 0 and cache.keys[1][:, :, :9].abs().sum() > 0
    assert cache.nbytes == kv_cache_bytes(2, 2, 8, 16, bytes_per_element=4, batch_size=3)


def test_kv_cache_formula():
    # GPT-2 small, fp16, 1024 tokens: 2 * 12 layers * 12 heads * 64 dims * 1024 * 2 bytes
    assert kv_cache_bytes(12, 12, 64, 1024, bytes_per_element=2) == 37_748_736
    with pytest.raises(ValueError, match="seq_len"):
        kv_cache_bytes(12, 12, 64, -1)


def test_kv_cache_overflow_and_reset():
    cache = KVCache(n_layer=1, batch_size=1, n_kv_head=1, max_len=4, head_dim=2)
    k = torch.ones(1, 1, 3, 2)
    cache.update(0, k, k)
    cache.advance(3)
    assert cache.remaining == 1
    with pytest.raises(ValueError, match="do not fit"):
        cache.update(0, k, k)
    cache.reset()
    assert cache.length == 0
    with pytest.raises(ValueError, match="max_len"):
        KVCache(1, 1, 1, 0, 2)


def test_stop_tokens_end_each_row():
    model = model_for("learned")
    prompt = torch.randint(0, 29, (2, 4))
    free = generate(model, prompt, 20, temperature=0)
    stop = int(free[0, 6])                     # row 0's third new token
    out = generate(model, prompt, 20, temperature=0, stop_tokens=[stop])
    first_stop = (free[:, 4:] == stop).int().argmax(1) + 4   # where each row first generates it
    for row in range(2):
        if (free[row, 4:] == stop).any():
            s = int(first_stop[row])
            assert torch.equal(out[row, :s + 1], free[row, :s + 1])
            assert torch.all(out[row, s:] == stop)         # a finished row repeats its stop token
    if (free[1, 4:] == stop).any():                        # both rows stop: generation ended early
        assert out.shape[1] == int(first_stop.max()) + 1
    single = generate(model, prompt[:1], 20, temperature=0, stop_tokens=stop)
    assert torch.equal(single, free[:1, :int(first_stop[0]) + 1])


def scalar_reads(fn) -> int:
    """Values read back from tensors while ``fn`` runs (each an ``aten::_local_scalar_dense``: on a GPU,
    a device-to-host sync)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "aten::_local_scalar_dense")


def as_on_an_accelerator(monkeypatch):
    """Switch the CPU-only value checks off as they are off a CPU: the sampler's and the model's
    (``is_compiling`` is what both consult besides the device) and the per-token stop check."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    monkeypatch.setattr(generation, "_stop_check_interval", lambda device: generation.STOP_CHECK_INTERVAL)


@pytest.mark.parametrize("with_stops", [False, True])
def test_the_decode_loop_reads_no_value_per_token_off_the_cpu(monkeypatch, with_stops):
    """Per decoded token: 0 reads without stop tokens, one per STOP_CHECK_INTERVAL tokens with them
    (before: 4 reads a token from the sampler and the model, 5 with stops). On the CPU, where reads are
    free, the checks stay on: 2 reads a token (the logits, the model's ids), 3 with stops."""
    model = model_for("rope", context_length=64)
    prompt = torch.randint(0, 29, (2, 5))
    free = generate(model, prompt, 42, temperature=0.0)
    stops = [t for t in range(29) if not (free == t).any()][:1] if with_stops else None   # never generated
    assert stops != []

    def per_token():
        reads = [scalar_reads(lambda n=n: generate(model, prompt, n, temperature=0.0, stop_tokens=stops))
                 for n in (10, 42)]
        return reads[1] - reads[0]                       # 32 more tokens, the same per-call reads

    assert per_token() == 32 * (3 if with_stops else 2)
    as_on_an_accelerator(monkeypatch)
    every = generation.STOP_CHECK_INTERVAL
    assert per_token() == (42 // every - 10 // every if with_stops else 0)


@pytest.mark.parametrize("seed", range(4))
def test_stop_checks_every_few_tokens_give_the_same_output(monkeypatch, seed):
    """Off the CPU the stop flag is read every STOP_CHECK_INTERVAL tokens and the output cut back:
    the tokens are those of the per-token check, whichever step the last row stops at."""
    model = model_for("learned", seed=seed)
    prompt = torch.randint(0, 29, (3, 4))
    for stop in range(0, 29, 4):
        per_token = generate(model, prompt, 40, temperature=1.0, stop_tokens=[stop, 1],
                             generator=torch.Generator().manual_seed(seed))
        with monkeypatch.context() as patch:
            patch.setattr(generation, "_stop_check_interval", lambda device: generation.STOP_CHECK_INTERVAL)
            batched = generate(model, prompt, 40, temperature=1.0, stop_tokens=[stop, 1],
                               generator=torch.Generator().manual_seed(seed))
        assert torch.equal(batched, per_token)


def test_one_dimensional_prompt_and_zero_new_tokens():
    model = model_for("alibi")
    prompt = torch.tensor([1, 2, 3])
    out = generate(model, prompt, 4, temperature=0)
    assert out.shape == (7,)
    assert torch.equal(out, generate(model, prompt[None], 4, temperature=0)[0])
    assert torch.equal(generate(model, prompt, 0), prompt)


def test_generate_restores_training_mode_and_disables_dropout():
    model = model_for("learned", dropout=0.5).train()
    prompt = torch.randint(0, 29, (1, 3))
    a = generate(model, prompt, 10, temperature=0)
    assert model.training
    assert torch.equal(a, generate(model, prompt, 10, temperature=0, use_cache=False))


@pytest.mark.parametrize("kwargs,match", [
    (dict(idx=torch.zeros(1, 0, dtype=torch.long)), "empty"),
    (dict(idx=torch.tensor([[3, 29]])), "vocabulary"),
    (dict(idx=torch.tensor([[0.5]])), "idx"),
    (dict(temperature=-0.1), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(min_p=2.0), "min_p"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(stop_tokens=[29]), "stop_tokens"),
])
def test_generate_rejects_bad_input_naming_the_argument(kwargs, match):
    args = dict(idx=torch.tensor([[1, 2]]), max_new_tokens=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate(model_for("none"), **args)


def test_a_tiny_temperature_generates_the_greedy_text():
    """logits / T overflowed into NaN probabilities, sampled an id past the vocabulary, and the next
    step blamed the input; now a tiny T is the T -> 0 limit, greedy decoding."""
    model = model_for("learned")
    prompt = torch.randint(0, 29, (2, 3))
    greedy = generate(model, prompt, 20, temperature=0)
    for use_cache in (True, False):
        out = generate(model, prompt, 20, temperature=1e-38, use_cache=use_cache,
                       generator=torch.Generator().manual_seed(0))
        assert torch.equal(out, greedy)


def test_an_output_that_cannot_be_allocated_is_refused_at_the_call():
    model = model_for("none")
    with pytest.raises(ValueError, match="max_new_tokens is too large"):
        generate(model, torch.tensor([[1, 2]]), 10**13)
