"""The generation loops and the FLOP formula that chapter 7 builds are tested here, on the chapter's
own code: the cells tagged ``chapter-code`` in ``chapters/07_kv_cache.ipynb`` are executed and the
functions they define are compared with ``lmcore.generate`` and with PyTorch's FLOP counter."""
from __future__ import annotations

import dataclasses

import nbformat
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import lmcore

NOTEBOOK = "chapters/07_kv_cache.ipynb"


@pytest.fixture(scope="module")
def chapter(root) -> dict:
    """The namespace left by the chapter's tagged cells (``naive_steps``, ``cached_steps``, ...)."""
    nb = nbformat.read(root / NOTEBOOK, as_version=4)
    cells = [c.source for c in nb.cells if "chapter-code" in c.metadata.get("tags", [])]
    assert cells, f"no cell of {NOTEBOOK} is tagged chapter-code"
    namespace: dict = {}
    for source in cells:
        exec(compile(source, NOTEBOOK, "exec"), namespace)
    return namespace


CONFIGS = {
    "learned positions": dict(),
    "rope, grouped-query": dict(pos_encoding="rope", n_kv_head=2),
    "sinusoidal, multi-query": dict(pos_encoding="sinusoidal", n_kv_head=1),
    "alibi, post-norm": dict(pos_encoding="alibi", norm="post"),
}


def small_gpt(seed: int = 0, **overrides) -> lmcore.GPT:
    torch.manual_seed(seed)
    config = lmcore.GPTConfig(vocab_size=50, context_length=48, n_layer=2, n_head=4, n_embd=32, **overrides)
    model = lmcore.GPT(config).eval()
    # Random GPT-2 initialisation gives nearly flat logits, where float noise could flip a greedy
    # choice; a larger output scale makes the distributions peaked like a trained model's.
    with torch.no_grad():
        model.transformer.wte.weight.mul_(20)
    return model


@pytest.mark.parametrize("name", CONFIGS)
def test_loops_match_lmcore_generate_greedy(chapter, name):
    model = small_gpt(**CONFIGS[name])
    prompt = torch.randint(50, (3, 5), generator=torch.Generator().manual_seed(1))
    n_new = model.config.context_length - prompt.shape[1]        # fill the context exactly
    want = lmcore.generate(model, prompt, n_new, temperature=0.0, use_cache=False)
    assert torch.equal(want, lmcore.generate(model, prompt, n_new, temperature=0.0, use_cache=True))
    for steps in (chapter["naive_steps"], chapter["cached_steps"]):
        got = chapter["generate_with"](steps, model, prompt, n_new, temperature=0.0)
        assert torch.equal(got, want), steps.__name__


@pytest.mark.parametrize("name", CONFIGS)
def test_loops_match_lmcore_generate_sampled(chapter, name):
    model = small_gpt(seed=2, **CONFIGS[name])
    prompt = torch.randint(50, (2, 3), generator=torch.Generator().manual_seed(4))
    runs = {}
    for use_cache, steps in ((False, chapter["naive_steps"]), (True, chapter["cached_steps"])):
        want = lmcore.generate(model, prompt, 30, temperature=0.8, use_cache=use_cache,
                               generator=torch.Generator().manual_seed(5))
        got = chapter["generate_with"](steps, model, prompt, 30, temperature=0.8,
                                       generator=torch.Generator().manual_seed(5))
        assert torch.equal(got, want), steps.__name__
        runs[use_cache] = got
    assert torch.equal(runs[False], runs[True])   # caching changes nothing about the samples


def test_cached_loop_feeds_one_token_per_step(chapter):
    """The cached loop runs the prompt once and then exactly one token per step (no recomputation)."""
    model = small_gpt()
    fed = []
    hook = model.transformer.wte.register_forward_hook(lambda m, args, out: fed.append(args[0].shape[1]))
    try:
        chapter["generate_with"](chapter["cached_steps"], model, torch.zeros(1, 4, dtype=torch.long), 6,
                                 temperature=0.0)
    finally:
        hook.remove()
    assert fed == [4, 1, 1, 1, 1, 1]


def test_loops_refuse_more_than_context_length(chapter):
    model = small_gpt()
    prompt = torch.zeros(1, 10, dtype=torch.long)
    too_many = model.config.context_length - 10 + 2
    for steps in (chapter["naive_steps"], chapter["cached_steps"]):
        with pytest.raises(ValueError, match="context_length"):
            chapter["generate_with"](steps, model, prompt, too_many, temperature=0.0)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("T, L", [(1, 1), (7, 7), (1, 30), (3, 20)])
def test_forward_flops_matches_flop_counter(chapter, name, T, L):
    """The chapter's FLOP formula equals what PyTorch counts for the explicit attention."""
    config = dataclasses.replace(small_gpt(**CONFIGS[name]).config, attn_impl="reference")
    model = lmcore.GPT(config).eval()
    cache = model.make_cache(1)
    ids = torch.randint(50, (1, L))
    with torch.inference_mode():
        if L > T:
            model(ids[:, :L - T], kv_cache=cache)
        counter = FlopCounterMode(display=False)
        with counter:
            model(ids[:, L - T:], kv_cache=cache if L > T else None, last_only=True)
    assert chapter["forward_flops"](config, T, L) == counter.get_total_flops()
