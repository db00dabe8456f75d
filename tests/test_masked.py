"""The bidirectional masked language model of chapter 5 against a brute-force computation."""
import math

import pytest
import torch

import lmcore
from lmcore.models import GPT, GPTConfig, MaskedLM, MaskedLMConfig, mask_tokens


def _tiny(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=5, context_length=6, n_layer=2, n_head=2, n_embd=8)
    cfg.update(kw)
    model = MaskedLM(MaskedLMConfig(**cfg)).eval()
    # non-zero biases and LayerNorm gains, so that every term of the formula is exercised
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape))
    return model


def _layer_norm(x, ln):
    mu = sum(x) / len(x)
    var = sum((xi - mu) ** 2 for xi in x) / len(x)
    return [(xi - mu) / math.sqrt(var + ln.eps) * g + b for xi, g, b in zip(x, ln.weight.tolist(), ln.bias.tolist())]


def _linear(x, layer):
    W, b = layer.weight.tolist(), layer.bias.tolist()
    return [sum(w * xi for w, xi in zip(row, x)) + bi for row, bi in zip(W, b)]


def _gelu(z):
    return 0.5 * z * (1 + math.erf(z / math.sqrt(2)))


def _brute_force_logits(model, ids):
    """Logits of one sequence, in plain Python floats: every query attends to every key (no mask)."""
    cfg = model.config
    C, H = cfg.n_embd, cfg.n_head
    d = C // H
    xs = [[e + p for e, p in zip(model.wte.weight[t].tolist(), model.wpe.weight[i].tolist())] for i, t in enumerate(ids)]
    for block in model.h:
        qkv = [_linear(_layer_norm(x, block.ln_1), block.attn.c_attn) for x in xs]
        heads_out = [[0.0] * C for _ in xs]
        for h in range(H):
            for i in range(len(xs)):
                q = qkv[i][h * d:(h + 1) * d]
                scores = [sum(a * b for a, b in zip(q, qkv[j][C + h * d:C + (h + 1) * d])) / math.sqrt(d)
                          for j in range(len(xs))]
                top = max(scores)
                w = [math.exp(s - top) for s in scores]
                w = [wi / sum(w) for wi in w]
                for c in range(d):
                    heads_out[i][h * d + c] = sum(w[j] * qkv[j][2 * C + h * d + c] for j in range(len(xs)))
        xs = [[a + b for a, b in zip(x, _linear(o, block.attn.c_proj))] for x, o in zip(xs, heads_out)]
        ffn = [_linear([_gelu(z) for z in _linear(_layer_norm(x, block.ln_2), block.mlp.c_fc)], block.mlp.c_proj)
               for x in xs]
        xs = [[a + b for a, b in zip(x, f)] for x, f in zip(xs, ffn)]
    E = model.wte.weight[:cfg.vocab_size].tolist()
    return [[sum(a * b for a, b in zip(_layer_norm(x, model.ln_f), e)) for e in E] for x in xs]


def test_loss_equals_brute_force_on_a_tiny_case():
    model = _tiny()
    mask_id = model.config.mask_id
    ids = torch.tensor([[3, mask_id, 0, 4, mask_id, 2], [mask_id, 1, 1, 0, 3, 4]])
    targets = torch.tensor([[-100, 2, -100, -100, 0, -100], [4, -100, -100, -100, -100, -100]])
    with torch.no_grad():
        logits, loss = model(ids, targets)
    nll = []
    for b, (row, trow) in enumerate(zip(ids.tolist(), targets.tolist())):
        brute = _brute_force_logits(model, row)
        for pos, target in enumerate(trow):
            if target != -100:
                top = max(brute[pos])
                nll.append(-(brute[pos][target] - top - math.log(sum(math.exp(z - top) for z in brute[pos]))))
        for pos in range(len(row)):
            assert logits[b, pos].tolist() == pytest.approx(brute[pos], abs=1e-5)
    assert loss.item() == pytest.approx(sum(nll) / len(nll), abs=1e-6)


def test_every_position_sees_both_sides_unlike_the_causal_model():
    model = _tiny()
    ids = torch.tensor([[0, 1, 2, 3, 4, 0]])
    later = ids.clone()
    later[0, -1] = 3
    with torch.no_grad():
        change = (model(later)[0] - model(ids)[0]).abs().amax(-1)[0]
    assert (change[:-1] > 1e-4).all()          # an earlier position reads the changed last token
    torch.manual_seed(0)
    causal = GPT(GPTConfig(vocab_size=5, context_length=6, n_layer=2, n_head=2, n_embd=8)).eval()
    with torch.no_grad():
        causal_change = (causal(later)[0] - causal(ids)[0]).abs().amax(-1)[0]
    assert (causal_change[:-1] == 0).all()


def test_logits_cover_the_real_tokens_only():
    model = _tiny()
    logits, loss = model(torch.tensor([[5, 0, 1]]))
    assert logits.shape == (1, 3, 5) and loss is None


def test_mask_tokens_hides_at_the_rate_and_targets_only_the_hidden():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 7, (400, 50), generator=g)
    inputs, targets = mask_tokens(ids, 0.15, mask_id=7, generator=g)
    hidden = inputs == 7
    assert (targets[hidden] == ids[hidden]).all() and (targets[~hidden] == -100).all()
    assert (inputs[~hidden] == ids[~hidden]).all()
    assert hidden.float().mean().item() == pytest.approx(0.15, abs=0.01)
    # a row with nothing drawn still gets one hidden position
    one = mask_tokens(torch.zeros(30, 4, dtype=torch.long), 1e-6, mask_id=3, generator=g)[0]
    assert ((one == 3).sum(1) == 1).all()


@pytest.mark.parametrize("kw, match", [
    (dict(mask_rate=0.0), "mask_rate"), (dict(mask_rate=1.5), "mask_rate"), (dict(n_embd=9), "divisible"),
    (dict(vocab_size=1), "vocab_size"),
])
def test_config_rejects_bad_values(kw, match):
    cfg = dict(vocab_size=5)
    cfg.update(kw)
    with pytest.raises(ValueError, match=match):
        MaskedLMConfig(**cfg)


def test_bad_inputs_name_the_argument():
    model = _tiny()
    with pytest.raises(ValueError, match="context_length"):
        model(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="idx"):       # an id above [MASK]
        model(torch.tensor([[6]]))
    with pytest.raises(ValueError, match="idx"):       # [MASK] already in the ids to hide
        mask_tokens(torch.tensor([[5]]), 0.5, mask_id=5)
    with pytest.raises(ValueError, match="mask_rate"):
        mask_tokens(torch.tensor([[1]]), 0.0, mask_id=5)
    with pytest.raises(TypeError, match="MaskedLMConfig"):
        MaskedLM(GPTConfig(vocab_size=5, context_length=6, n_layer=1, n_head=2, n_embd=8))


def test_trainer_lowers_its_loss_through_a_batch_fn():
    torch.manual_seed(0)
    model = MaskedLM(MaskedLMConfig(vocab_size=4, context_length=8, n_layer=1, n_head=2, n_embd=16, mask_rate=0.3))
    pattern = torch.arange(8) % 4                  # 0 1 2 3 0 1 2 3: every hidden token is known from its neighbours

    def batch_fn(split, generator):
        return mask_tokens(pattern.repeat(16, 1), 0.3, 4, generator=generator)

    cfg = lmcore.TrainConfig(max_steps=60, batch_size=16, lr=1e-2, warmup_steps=5, eval_interval=60, eval_iters=2,
                             progress=False, device="cpu")
    trainer = lmcore.Trainer(model, cfg, batch_fn=batch_fn)
    trainer.train()
    val = [r["val_loss"] for r in trainer.history if "val_loss" in r]
    assert val[-1] < 0.1 < math.log(4)
