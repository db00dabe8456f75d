"""Chapter 7's prompt fan-out (``fanout_steps``: prefill once, ``KVCache.prefill`` into every row) gives
exactly the samples of the batched cached loop on copies of the prompt, and of ``lmcore.generate``;
the chapter's own cells (tagged ``chapter-code``) are executed and compared."""
from __future__ import annotations

import nbformat
import pytest
import torch

import lmcore

NOTEBOOK = "chapters/07_kv_cache.ipynb"


@pytest.fixture(scope="module")
def chapter(root) -> dict:
    nb = nbformat.read(root / NOTEBOOK, as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        if "chapter-code" in cell.metadata.get("tags", []):
            exec(compile(cell.source, NOTEBOOK, "exec"), namespace)
    assert "fanout_steps" in namespace, f"no chapter-code cell of {NOTEBOOK} defines fanout_steps"
    return namespace


CONFIGS = {
    "learned positions": dict(),
    "rope, grouped-query": dict(pos_encoding="rope", n_kv_head=2),
    "alibi": dict(pos_encoding="alibi"),
    # a prompt longer than the window: the batch-1 rolling buffer has wrapped before it is copied
    "rope, window 8": dict(pos_encoding="rope", window=8),
}


def small_gpt(scale: float = 20.0, **overrides) -> lmcore.GPT:
    """A random GPT whose embeddings are scaled by ``scale``: peaked distributions like a trained model's
    (20: greedy choices far from ties, see test_kv_cache_chapter), or varied samples (3)."""
    torch.manual_seed(0)
    model = lmcore.GPT(lmcore.GPTConfig(vocab_size=40, context_length=48, n_layer=2, n_head=4, n_embd=32,
                                        **overrides)).eval()
    with torch.no_grad():
        model.transformer.wte.weight.mul_(scale)
    return model


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_fanout_equals_the_batch_of_copies_and_generate(chapter, name, temperature):
    model = small_gpt(20.0 if temperature == 0 else 3.0, **CONFIGS[name])
    prompt = torch.randint(40, (1, 13), generator=torch.Generator().manual_seed(3))
    n_samples, n_new = 5, model.config.context_length - 13

    def run(steps, idx, *args):
        return torch.cat(list(steps(model, idx, *args, temperature=temperature,
                                    generator=torch.Generator().manual_seed(7))), dim=1)

    fanned = run(chapter["fanout_steps"], prompt, n_samples, n_new)
    copies = run(chapter["cached_steps"], prompt.expand(n_samples, -1), n_new)
    assert fanned.shape == (n_samples, n_new)
    assert torch.equal(fanned, copies)
    want = lmcore.generate(model, prompt.expand(n_samples, -1), n_new, temperature=temperature, use_cache=False,
                           generator=torch.Generator().manual_seed(7))[:, 13:]
    assert torch.equal(fanned, want)
    if temperature > 0:
        assert len({tuple(r) for r in fanned.tolist()}) > 1, "the samples should differ from row to row"


def test_fanout_computes_the_prompt_once(chapter):
    """The prefill runs on one row: the model sees the prompt with batch size 1, every later step with n."""
    model = small_gpt(pos_encoding="rope")
    batch_sizes = []
    hook = model.transformer.wte.register_forward_hook(lambda mod, inp, out: batch_sizes.append(tuple(inp[0].shape)))
    prompt = torch.randint(40, (1, 10), generator=torch.Generator().manual_seed(0))
    list(chapter["fanout_steps"](model, prompt, 6, 4, temperature=0.0))
    hook.remove()
    assert batch_sizes == [(1, 10), (6, 1), (6, 1), (6, 1)]
