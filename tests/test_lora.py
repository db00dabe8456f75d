"""LoRA adapters: the maths against a hand-written formula, merging, freezing, counting."""
import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from lmcore import GPT, GPTConfig
from lmcore.models.lora import (
    LoRALinear,
    apply_lora,
    lora_modules,
    lora_parameter_counts,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unmerge_lora,
)


def small_gpt(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=13, context_length=16, n_layer=2, n_head=2, n_embd=16)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


def randomise_adapters(model: nn.Module, seed: int = 1) -> None:
    """Give every B a non-zero value (a fresh adapter is an exact no-op, which would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model):
            m.lora_B.copy_(0.1 * torch.randn(m.lora_B.shape, generator=g))


def idx(seed: int = 2) -> torch.Tensor:
    return torch.randint(13, (3, 16), generator=torch.Generator().manual_seed(seed))


def test_forward_matches_the_formula():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=3, alpha=7.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 2, 6, dtype=torch.float64)
    W, b = base.weight.double(), base.bias.double()
    A, B = layer.lora_A.double(), layer.lora_B.double()
    want = x @ (W + (7.0 / 3) * B @ A).T + b        # the merged matrix, in float64
    assert layer.double()(x).shape == (4, 2, 5)
    torch.testing.assert_close(layer(x), want, atol=1e-12, rtol=0)


def test_zero_init_B_gives_the_base_model_exactly():
    model = small_gpt()
    reference = copy.deepcopy(model)
    apply_lora(model, r=4, alpha=8)
    assert all(torch.count_nonzero(m.lora_B) == 0 and torch.count_nonzero(m.lora_A) > 0 for m in lora_modules(model))
    assert torch.equal(model(idx())[0], reference(idx())[0])


def test_apply_lora_wraps_every_attention_and_mlp_projection():
    model = apply_lora(small_gpt(), r=2)
    names = sorted(n for n, m in model.named_modules() if isinstance(m, LoRALinear))
    want = sorted(f"transformer.h.{i}.{p}" for i in range(2)
                  for p in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"))
    assert names == want
    only_attn = apply_lora(small_gpt(), r=2, targets=("c_attn",))
    assert len(lora_modules(only_attn)) == 2


def test_merged_equals_unmerged_outputs():
    model = apply_lora(small_gpt(), r=4, alpha=16)
    randomise_adapters(model)
    unmerged = model(idx())[0]
    merge_lora(model)
    assert all(m.merged for m in lora_modules(model))
    merged = model(idx())[0]
    assert not torch.allclose(merged, small_gpt()(idx())[0], atol=1e-3)   # the adapters do something
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)


def test_merge_then_unmerge_restores_the_weights_and_merge_is_idempotent():
    model = apply_lora(small_gpt(), r=3, alpha=5)
    randomise_adapters(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merge_lora(model)
    merge_lora(model)             # a second merge must not add the update twice
    w = lora_modules(model)[0]
    torch.testing.assert_close(w.base.weight, before["transformer.h.0.attn.c_attn.base.weight"] + w.delta_weight())
    unmerge_lora(model)
    unmerge_lora(model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=1e-6, rtol=0)


def test_only_lora_parameters_require_grad_and_receive_gradients():
    model = mark_only_lora_trainable(apply_lora(small_gpt(), r=2))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert len(trainable) == 2 * 4 * 2          # A and B, 4 projections, 2 layers
    randomise_adapters(model)
    _, loss = model(idx(), idx(3))
    loss.backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == (n in trainable), n
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in trainable)


def test_parameter_counts_match_r_times_in_plus_out():
    for r in (1, 2, 4):
        model = mark_only_lora_trainable(apply_lora(small_gpt(), r=r))
        counts = lora_parameter_counts(model)
        # per layer: c_attn 16->48, c_proj 16->16, c_fc 16->64, c_proj 64->16
        assert counts.trainable == 2 * r * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16))
        base_total = sum(p.numel() for p in small_gpt().parameters())
        assert counts.total == base_total + counts.trainable
        assert counts.percent == pytest.approx(100 * counts.trainable / counts.total)
        assert sum(v.numel() for v in lora_state_dict(model).values()) == counts.trainable


def test_adapter_state_dict_round_trip():
    trained = apply_lora(small_gpt(), r=2)
    randomise_adapters(trained)
    fresh = apply_lora(small_gpt(), r=2)
    missing, unexpected = fresh.load_state_dict(lora_state_dict(trained), strict=False)
    assert not unexpected and all(not k.endswith(("lora_A", "lora_B")) for k in missing)
    assert torch.equal(fresh(idx())[0], trained(idx())[0])


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 8), r=2, alpha=2, dropout=0.5)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(64, 8)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    assert not torch.equal(layer(x), layer(x))


@pytest.mark.parametrize("r", [0, -1, 2.0, True, None])
def test_bad_rank_raises(r):
    with pytest.raises(ValueError, match="r"):
        LoRALinear(nn.Linear(4, 4), r=r)
    with pytest.raises(ValueError, match="rank"):
        apply_lora(small_gpt(), r=r)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="exceeds"):
        LoRALinear(nn.Linear(4, 3), r=4)
    with pytest.raises(ValueError, match="alpha"):
        apply_lora(small_gpt(), r=2, alpha=0)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(nn.Linear(4, 4), r=1, dropout=1.0)
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(4, 4, 1), r=1)
    with pytest.raises(ValueError, match="no nn.Linear"):
        apply_lora(small_gpt(), r=2, targets=("q_proj",))
    with pytest.raises(TypeError, match="collection"):
        apply_lora(small_gpt(), r=2, targets="c_attn")
    model = apply_lora(small_gpt(), r=2)
    with pytest.raises(ValueError, match="already"):
        apply_lora(model, r=2)
    with pytest.raises(ValueError, match="apply_lora"):
        merge_lora(small_gpt())


def test_tied_lm_head_is_refused_and_an_untied_one_merges_exactly():
    """Issue 15, item 6: a LoRA on the tied head was merged into the shared embedding as well (merged
    logits off by up to 9.85). The tie is refused with a message; untied, merging is exact."""
    model = small_gpt()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"lm_head\.weight is shared with transformer\.wte\.weight.*tie_weights=False"):
        apply_lora(model, r=2, targets=("lm_head",))
    assert not lora_modules(model) and isinstance(model.lm_head, nn.Linear)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    untied = apply_lora(small_gpt(tie_weights=False), r=2, targets=("lm_head", "c_attn"))
    randomise_adapters(untied)
    embedding = untied.transformer.wte.weight.clone()
    unmerged = untied(idx())[0]
    merge_lora(untied)
    torch.testing.assert_close(untied(idx())[0], unmerged, atol=1e-5, rtol=0)
    assert torch.equal(untied.transformer.wte.weight, embedding)


def test_a_module_reachable_twice_is_refused():
    shared = nn.Linear(8, 8)
    model = nn.Sequential(OrderedDict(first=nn.Sequential(OrderedDict(proj=shared)),
                                      second=nn.Sequential(OrderedDict(proj=shared))))
    with pytest.raises(ValueError, match="shared with"):
        apply_lora(model, r=2, targets=("proj",))
    assert model.first.proj is shared and model.second.proj is shared


def test_apply_lora_is_atomic_when_one_target_does_not_fit():
    """Issue 15, item 6: r=6 fits the 8x8 layer but not the 8->4 one; the failed call used to adapt
    the first layer and then raise, and the retry was refused ("already has LoRA adapters")."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(a=nn.Linear(8, 8), b=nn.Linear(8, 4)))
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match="r=6 exceeds .* of b"):
        apply_lora(model, r=6, targets=("a", "b"))
    assert [type(m) for m in model] == [nn.Linear, nn.Linear]
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)       # not even an adapter was initialised
    apply_lora(model, r=4, targets=("a", "b"))
    assert [m.r for m in lora_modules(model)] == [4, 4]


@pytest.mark.parametrize("call,match", [
    (lambda: apply_lora(small_gpt(), r=2, dropout=float("nan")), "dropout"),
    (lambda: apply_lora(small_gpt(), r=2, dropout=True), "dropout"),
    (lambda: apply_lora(small_gpt(), r=2, alpha=float("inf")), "alpha"),
    (lambda: apply_lora({"c_attn": nn.Linear(2, 2)}, r=1), "model must be a torch.nn.Module"),
    (lambda: lora_parameter_counts("gpt"), "model must be a torch.nn.Module"),
    (lambda: LoRALinear(nn.Linear(4, 4), r=1, dropout="0.1"), "dropout"),
])
def test_more_bad_arguments_name_the_argument(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()
