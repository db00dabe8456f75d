"""Generation with ``torch.compile(model)``: compiled code runs, the decode step compiles once, and the
tokens are the eager ones. Graphs are counted with a backend that records each graph it is given and
runs it as it is (no code generation, so the test is fast)."""
import pytest
import torch
from torch._dynamo.utils import counters

from lmcore import GPT, GPTConfig, MLPConfig, MLPLanguageModel
from lmcore.decoding.generation import generate
from lmcore.decoding.static import StaticKVCache, static_forward

CASES = [dict(pos_encoding=p) for p in ("learned", "sinusoidal", "rope", "alibi", "none")] + [
    dict(pos_encoding="rope", n_kv_head=1), dict(pos_encoding="learned", n_kv_head=2, norm="post"),
    dict(pos_encoding="alibi", attn_impl="reference")]


def model_for(seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    kw = dict(vocab_size=29, context_length=16, n_layer=2, n_head=4, n_embd=32, tie_weights=False) | overrides
    model = GPT(GPTConfig(**kw)).eval()
    with torch.no_grad():   # larger weights than the init, so greedy text is not constant
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(25)
    return model


class CountingBackend:
    """A torch.compile backend that keeps every graph it compiles and runs it unchanged."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()          # compiled code of other tests must not be reused (or counted)
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_static_forward_gives_the_logits_of_gpt_forward(case):
    """The fixed-size cache path (prefill, then one token at a time, then a restart at position 0)
    computes the logits of the model's own forward on the same context."""
    model = model_for(**case)
    seq = torch.randint(0, 29, (2, 16))
    cache = StaticKVCache(model, 2, torch.float32)
    with torch.no_grad():
        for restart in (False, True):
            start = 6 if restart else 0
            cache.reset()
            logits = static_forward(model, seq[:, start:start + 5], cache)
            cache.advance(5)
            for n in range(start + 5, 16):
                expected = model(seq[:, start:n])[0][:, -1:]
                torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
                logits = static_forward(model, seq[:, n:n + 1], cache)
                cache.advance(1)
            assert cache.length == 16 - start and int(cache.pos) == 16 - start


@pytest.mark.parametrize("dynamic", [False, None])
def test_compiled_model_generates_with_one_compiled_decode_step(dynamic):
    """``generate(torch.compile(model))`` runs compiled code, and its decode step compiles once: with
    dynamic=False the cache length used to be a guard, which recompiled on every token. 40 tokens
    with a 16-token context restart the window twice; a second call with other lengths compiles nothing."""
    model = model_for(pos_encoding="rope")
    backend = CountingBackend()
    compiled = torch.compile(model, backend=backend, dynamic=dynamic)
    prompt = torch.randint(0, 29, (2, 5))
    out = generate(compiled, prompt, 40, temperature=0)
    assert len(backend.graphs) == 1
    assert not counters["graph_break"]
    assert torch.equal(out, generate(model, prompt, 40, temperature=0))
    generate(compiled, prompt[:, :3], 25, temperature=0)
    assert len(backend.graphs) == 1


@pytest.mark.parametrize("case", CASES[:5], ids=lambda c: c["pos_encoding"])
def test_compiled_sampling_with_stop_tokens_equals_eager(case):
    model = model_for(**case)
    compiled = torch.compile(model, backend=CountingBackend(), dynamic=False)
    prompt = torch.randint(0, 29, (3, 4))
    outs = []
    for m in (compiled, model):
        g = torch.Generator().manual_seed(7)
        outs.append((generate(m, prompt, 30, temperature=0.9, top_k=10, stop_tokens=[3, 5], generator=g),
                     g.get_state()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_compiled_models_without_a_cache_run_their_compiled_forward():
    """Without the cache (and for the MLP, which has none) the compiled module itself runs."""
    gpt = model_for()
    torch.manual_seed(0)
    mlp = MLPLanguageModel(MLPConfig(vocab_size=29, context_length=4, n_embd=8, n_hidden=16)).eval()
    prompt = torch.randint(0, 29, (2, 5))
    for model, use_cache in ((gpt, False), (mlp, True)):
        backend = CountingBackend()
        out = generate(torch.compile(model, backend=backend), prompt, 20, temperature=0, use_cache=use_cache)
        assert backend.graphs
        assert torch.equal(out, generate(model, prompt, 20, temperature=0, use_cache=use_cache))


def test_the_static_cache_holds_the_autocast_dtype():
    """Under autocast the keys are bfloat16, and so is the fixed-size cache (half the memory of float32);
    the logits stay those of the model's forward to bfloat16 rounding."""
    model = model_for(pos_encoding="rope")
    seq = torch.randint(0, 29, (2, 6))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cache = StaticKVCache(model, 2)
        logits = static_forward(model, seq, cache)
        expected = model(seq)[0][:, -1:]
    assert cache.keys[0].dtype == cache.values[1].dtype == torch.bfloat16
    assert StaticKVCache(model, 2).keys[0].dtype == torch.float32
    torch.testing.assert_close(logits.float(), expected.float(), rtol=0.05, atol=0.5)
