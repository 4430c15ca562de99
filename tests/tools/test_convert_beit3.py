"""tools/convert/torchscale_beit3_to_vlp.py: a tiny random torchscale BEiT3 (unilm's
settings: multiway, sub-LN, no output layer) converts to BEiT3Transformer with equal
outputs for image-only, text-only with padding, fusion and masked-image inputs."""
import pytest
import torch

pytest.importorskip('torchscale')
from torchscale.architecture.config import EncoderConfig  # noqa: E402
from torchscale.model.BEiT3 import BEiT3  # noqa: E402

from conftest import load_tool  # noqa: E402
from vlp.models.backbones.beit3 import BEiT3Transformer  # noqa: E402

conv = load_tool('convert/torchscale_beit3_to_vlp')
ATOL = 1e-5
IMG, PATCH, DIM, VOCAB, HEADS = 32, 8, 32, 60, 2


def torchscale_beit3(**kw):
    """A tiny BEiT3 configured as unilm/beit3's ``_get_base_config``; every parameter
    perturbed so that layer norms, mask and [CLS] tokens are not at their init."""
    torch.manual_seed(0)
    cfg = dict(img_size=IMG, patch_size=PATCH, vocab_size=VOCAB, multiway=True,
               layernorm_embedding=False, normalize_output=True, no_output_layer=True,
               encoder_embed_dim=DIM, encoder_attention_heads=HEADS,
               encoder_ffn_embed_dim=2 * DIM, encoder_layers=2, max_source_positions=20)
    cfg.update(kw)
    model = BEiT3(EncoderConfig(**cfg)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def inputs():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, IMG, IMG, generator=g)
    ids = torch.randint(0, VOCAB, (2, 9), generator=g)
    keep = torch.ones(2, 9, dtype=torch.long)
    keep[1, 5:] = 0
    masked = torch.zeros(2, (IMG // PATCH) ** 2, dtype=torch.bool)
    masked[0, :6] = True
    masked[1, 10:] = True
    return images, ids, keep, masked


def convert_model(ref, prefix='beit3.'):
    sd = {prefix + k: v for k, v in ref.state_dict().items()}
    sd['logit_scale'] = torch.tensor(2.0)  # a unilm head key
    state, report = conv.convert_beit3_state_dict(sd)
    cfg = conv.beit3_model_cfg(state, num_heads=HEADS)
    assert cfg.pop('type') == 'BEiT3Transformer'
    model = BEiT3Transformer(**cfg).eval()
    model.load_state_dict(state, strict=True)
    return model, report


@pytest.mark.parametrize('prefix', ['beit3.', ''])
def test_parity_with_torchscale(prefix):
    ref = torchscale_beit3()
    model, report = convert_model(ref, prefix)
    assert report.prefix == prefix
    assert report.skipped == ['logit_scale']  # a head key, not converted
    images, ids, keep, masked = inputs()
    n_img = (IMG // PATCH) ** 2 + 1
    diffs = {}
    with torch.no_grad():
        r = ref(visual_tokens=images)['encoder_out']
        diffs['image'] = (r - model(images=images)['image_embeds']).abs().max()
        r = ref(textual_tokens=ids, text_padding_position=keep == 0)['encoder_out']
        o = model(input_ids=ids, attention_mask=keep)
        diffs['text'] = (r - o['text_embeds']).abs().max()
        r = ref(textual_tokens=ids, visual_tokens=images,
                text_padding_position=keep == 0)['encoder_out']
        o = model(images=images, input_ids=ids, attention_mask=keep)
        assert o['image_embeds'].shape[1] == n_img
        diffs['fusion'] = (r - torch.cat([o['image_embeds'], o['text_embeds']], 1)).abs().max()
        r = ref(textual_tokens=ids, visual_tokens=images)['encoder_out']
        o = model(images=images, input_ids=ids)
        diffs['fusion_nopad'] = (r - torch.cat([o['image_embeds'], o['text_embeds']],
                                               1)).abs().max()
        r = ref(visual_tokens=images, vision_masked_position=masked)['encoder_out']
        o = model(images=images, vision_masked_position=masked)
        diffs['masked'] = (r - o['image_embeds']).abs().max()
        r = ref(textual_tokens=ids, visual_tokens=images, text_padding_position=keep == 0,
                vision_masked_position=masked)['encoder_out']
        o = model(images=images, input_ids=ids, attention_mask=keep,
                  vision_masked_position=masked)
        diffs['fusion_masked'] = (r - torch.cat([o['image_embeds'], o['text_embeds']],
                                                1)).abs().max()
    print({k: f'{v.item():.2e}' for k, v in diffs.items()})
    for k, v in diffs.items():
        assert v <= ATOL, (k, v)


def test_output_projection_kept_and_unknown_keys_raise():
    """torchscale's output layer is converted (BEiT3Transformer(output_projection=True)):
    output_logits equals torchscale's encoder_out with the layer."""
    ref = torchscale_beit3(no_output_layer=False)
    sd = {'beit3.' + k: v for k, v in ref.state_dict().items()}
    assert 'beit3.encoder.output_projection.weight' in sd
    state, report = conv.convert_beit3_state_dict(sd)
    assert not report.dropped and 'output_projection.weight' in state
    cfg = conv.beit3_model_cfg(state, num_heads=HEADS)
    assert cfg.pop('type') == 'BEiT3Transformer' and cfg['output_projection'] is True
    model = BEiT3Transformer(**cfg).eval()
    model.load_state_dict(state, strict=True)
    images, ids, keep, _ = inputs()
    with torch.no_grad():
        r = ref(textual_tokens=ids, visual_tokens=images,
                text_padding_position=keep == 0)['encoder_out']  # (B, N, V) logits
        o = model(images=images, input_ids=ids, attention_mask=keep)
        o = model.output_logits(torch.cat([o['image_embeds'], o['text_embeds']], 1))
    assert r.shape[-1] == VOCAB and (r - o).abs().max() <= ATOL
    sd['beit3.encoder.layernorm_embedding.A.weight'] = torch.ones(DIM)
    with pytest.raises(KeyError, match='layernorm_embedding'):
        conv.convert_beit3_state_dict(sd)
    with pytest.raises(KeyError, match='text_embed'):
        conv.convert_beit3_state_dict({'foo.weight': torch.ones(1)})


def test_cli_writes_a_complete_model(tmp_path):
    """Without retrieval heads: the BEiT3 pre-training model around the backbone (heads at
    init, reported), loaded strictly by init_model; its backbone equals torchscale."""
    from vlp.apis import init_model
    ref = torchscale_beit3()
    src = tmp_path / 'beit3_tiny.pth'
    torch.save({'model': {'beit3.' + k: v for k, v in ref.state_dict().items()}}, src)
    out = conv.main([str(src), str(tmp_path / 'out'), '--num-heads', str(HEADS)])
    assert out['model_cfg']['type'] == 'BEiT3'
    assert any(k.startswith('mlm_head.') for k in out['report'].left_at_init)
    model = init_model(str(tmp_path / 'out'))
    images, ids, keep, _ = inputs()
    with torch.no_grad():
        r = ref(textual_tokens=ids, visual_tokens=images,
                text_padding_position=keep == 0)['encoder_out']
        o = model.backbone(images=images, input_ids=ids, attention_mask=keep)
    assert (r - torch.cat([o['image_embeds'], o['text_embeds']], 1)).abs().max() <= ATOL


def test_from_scratch_init_matches_torchscale_scale():
    """Same init distributions as torchscale (incl. the sub-LN gain on fc1 / fc2 / out /
    value projections), compared by standard deviation on a mid-sized model."""
    dim, ffn = 128, 512
    torch.manual_seed(0)
    ref = BEiT3(EncoderConfig(img_size=32, patch_size=8, vocab_size=500, multiway=True,
                              no_output_layer=True, encoder_embed_dim=dim,
                              encoder_attention_heads=4, encoder_ffn_embed_dim=ffn,
                              encoder_layers=4, max_source_positions=64))
    ours = BEiT3Transformer(img_size=32, patch_size=8, vocab_size=500, max_text_len=64,
                            embed_dim=dim, depth=4, num_heads=4, ffn_dim=ffn)
    r, o = ref.state_dict(), ours.state_dict()
    L = 'encoder.layers.3.'
    pairs = [
        (r[L + 'self_attn.q_proj.B.weight'], o['blocks.3.attn.qkv.l.weight'][:dim]),
        (r[L + 'self_attn.v_proj.A.weight'], o['blocks.3.attn.qkv.v.weight'][2 * dim:]),
        (r[L + 'self_attn.out_proj.A.weight'], o['blocks.3.attn.proj.v.weight']),
        (r[L + 'ffn.B.fc1.weight'], o['blocks.3.ffn.l.fc1.weight']),
        (r[L + 'ffn.A.fc2.weight'], o['blocks.3.ffn.v.fc2.weight']),
        (r['text_embed.weight'], o['word_embeddings.weight']),
        (r['encoder.embed_positions.B.weight'], o['text_pos_embed.weight']),
        (r['vision_embed.proj.weight'], o['patch_embed.weight']),
    ]
    for a, b in pairs:
        assert abs(a.std() / b.std() - 1) < 0.08, (a.std(), b.std())
    for k in ('cls_token', 'mask_token'):
        assert not o[k].any() and not r['vision_embed.' + k].any()


def test_public_api_matches_retrieval_reference(tmp_path):
    """Issue 19: a torchscale BEiT-3 with unilm's retrieval heads (``BEiT3ForRetrieval``:
    ``vision_head`` / ``language_head`` on the ``[CLS]`` state, L2-normalised), converted and
    used through ``vlp.apis`` only: uint8 images of another size (resized by the converted
    config's test pipeline) and token ids (no tokenizer is written for BEiT-3's XLM-R ids)
    give the reference's features and similarities on the same preprocessed pixels."""
    import torch.nn.functional as F

    from vlp import apis
    ref = torchscale_beit3()
    g = torch.Generator().manual_seed(2)
    heads = {'vision_head.weight': 0.2 * torch.randn(DIM, DIM, generator=g),
             'language_head.weight': 0.2 * torch.randn(DIM, DIM, generator=g),
             'logit_scale': torch.tensor(3.0)}
    src = tmp_path / 'beit3_retrieval_tiny.pth'
    torch.save({'model': {**{'beit3.' + k: v for k, v in ref.state_dict().items()}, **heads}},
               src)
    out = conv.main([str(src), str(tmp_path / 'out'), '--num-heads', str(HEADS)])
    assert out['model_cfg']['type'] == 'BEiT3Retrieval'
    model = apis.init_model(str(tmp_path / 'out'))
    assert {'encode_image', 'encode_text', 'match'} <= set(apis.supported_tasks(model))
    assert model.preprocess.size == (IMG, IMG)
    images = torch.randint(0, 256, (2, 3, 48, 40), dtype=torch.uint8, generator=g)
    ids = torch.randint(3, VOCAB, (3, 9), generator=g)
    pixels = apis.preprocess(model, images)
    assert pixels.shape == (2, 3, IMG, IMG)
    with torch.no_grad():
        img = ref(visual_tokens=pixels)['encoder_out'][:, 0]
        txt = ref(textual_tokens=ids)['encoder_out'][:, 0]
    img_want = F.normalize(img @ heads['vision_head.weight'].t(), dim=-1)
    txt_want = F.normalize(txt @ heads['language_head.weight'].t(), dim=-1)
    assert (apis.encode_image(model, images) - img_want).abs().max() <= ATOL
    assert (apis.encode_text(model, ids) - txt_want).abs().max() <= ATOL
    res = apis.match(model, images, ids)
    assert (res['itc'] - img_want @ txt_want.t()).abs().max() <= ATOL
    probs = (heads['logit_scale'].exp() * (img_want @ txt_want.t())).softmax(-1)
    assert (res['itc_probs'] - probs).abs().max() <= 1e-4
