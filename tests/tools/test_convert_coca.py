"""Parity of tools/convert/open_clip_coca_to_vlp.py on a tiny random open_clip ``CoCa``.

The reference is built in-process (no download) with every floating parameter perturbed
(so a swapped LayerNorm or bias shows), converted through the command-line entry point,
loaded with ``vlp.apis.init_model`` and compared in fp32: L2-normalised image and text
embeddings and the captioning decoder's next-token logits at every position (atol 1e-5).
The texts are right padded with zeros (open_clip's pad id), so the ``[CLS]`` mask of
open_clip's released weights (``correct_cls_mask=False``) is exercised.
"""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from conftest import load_tool  # noqa: E402

ATOL = 1e-5
V, CTX = 64, 12


coca_tool = load_tool('convert/open_clip_coca_to_vlp')


def _oc_config(quick_gelu=False, vision_width=48):
    return dict(
        embed_dim=32, quick_gelu=quick_gelu,
        vision_cfg=dict(image_size=32, patch_size=8, width=vision_width, layers=2,
                        head_width=16, attentional_pool=True, attn_pooler_heads=4,
                        attn_pooler_queries=6, output_tokens=True),
        text_cfg=dict(context_length=CTX, vocab_size=V, width=32, heads=4, layers=2,
                      embed_cls=True, output_tokens=True),
        multimodal_cfg=dict(context_length=CTX, vocab_size=V, width=32, heads=4, layers=2),
        custom_text=True)


def _oc_model(tmp_path, **kw):
    import open_clip
    cfg = _oc_config(**kw)
    torch.manual_seed(0)
    model = open_clip.CoCa(**{k: v for k, v in cfg.items() if k != 'custom_text'}).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # open_clip 3.3 leaves the decoder's text_projection uninitialised (torch.empty)
        torch.nn.init.normal_(model.text_decoder.text_projection, std=32 ** -0.5)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        model.logit_scale.fill_(3.0)
    ckpt = str(tmp_path / 'coca.pt')
    torch.save(model.state_dict(), ckpt)
    cfg_file = str(tmp_path / 'coca.json')
    with open(cfg_file, 'w') as f:
        import json
        json.dump(cfg, f)
    return model, cfg_file, ckpt


def _texts():
    """SOT = V - 2, content in [1, V - 2), EOT = V - 1 (the largest id), zero padding;
    one row fills the whole context (no padding at all)."""
    g = torch.Generator().manual_seed(2)
    ids = torch.zeros(3, CTX, dtype=torch.long)
    for row, n in enumerate((3, 7, CTX - 2)):
        ids[row, 0] = V - 2
        ids[row, 1:n + 1] = torch.randint(1, V - 2, (n, ), generator=g)
        ids[row, n + 1] = V - 1
    return ids


def _assert_close(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a - b).abs().max().item()
    assert err <= ATOL, f'max abs difference {err:.3g} > {ATOL}'


@pytest.mark.parametrize('quick_gelu,vision_width', [(False, 48), (True, 32)],
                         ids=['gelu-kdim48', 'quickgelu-kdim32'])
def test_open_clip_coca_parity(tmp_path, quick_gelu, vision_width):
    """vision_width 48 != pooler width 32: the pooler's separate q/k/v projections;
    32: its fused ``in_proj_weight``."""
    from vlp.apis import init_model
    ref, cfg_file, ckpt = _oc_model(tmp_path, quick_gelu=quick_gelu,
                                    vision_width=vision_width)
    out = str(tmp_path / 'vlp')
    coca_tool.main(['--model-config', cfg_file, '--checkpoint', ckpt, '--no-tokenizer', out])
    model = init_model(osp.join(out, 'config.py'), osp.join(out, 'model.pth'), strict=True)
    assert model.pooler_layout == 'shared' and model.text.legacy_cls_mask
    assert model.decoder.cross_blocks is not None  # open_clip's layer layout

    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids = _texts()
    mask = (ids != 0).long()
    with torch.no_grad():
        want = ref(images, ids)  # logits of ids[:, :-1] -> labels ids[:, 1:]
        got_img = model.image_features(images)
        got_txt = model.text_features(ids, mask)
        got_logits = model.caption_logits(got_txt['text_hidden'][:, :-1],
                                          got_img['caption_tokens'])
    _assert_close(got_img['image_feat'], want['image_features'])
    _assert_close(got_txt['text_feat'], want['text_features'])
    _assert_close(got_logits, want['logits'])
    # the same through the inference API (mask from the EOT position)
    _assert_close(model.encode_image(images), F.normalize(ref.encode_image(images), dim=-1))
    _assert_close(model.encode_text(ids), want['text_features'])
    assert model.itc.logit_scale.item() == pytest.approx(3.0)

    # and the next-token logits during decoding (no padding, a growing prefix)
    prefix = ids[1:2, :5]
    with torch.no_grad():
        want = ref(images[1:2], prefix, output_labels=False)['logits']
        hidden = model.text(prefix, torch.ones_like(prefix))['text_hidden']
        got = model.caption_logits(hidden, got_img['caption_tokens'][1:2])
    _assert_close(got, want)


def test_coca_converter_rejects_what_it_cannot_reproduce():
    import open_clip
    cfg = _oc_config()
    cfg['vision_cfg']['attentional_pool'] = 'parallel'
    with pytest.raises(NotImplementedError):
        coca_tool.open_clip_coca_config_to_vlp(cfg)
    with pytest.raises(NotImplementedError):  # HF RoBERTa text tower
        coca_tool.open_clip_coca_config_to_vlp(
            open_clip.get_model_config('coca_roberta-ViT-B-32'))
    # the released architectures are supported
    named = coca_tool.open_clip_coca_config_to_vlp(open_clip.get_model_config('coca_ViT-B-32'))
    assert named['cap_pooler']['n_queries'] == 256 and named['decoder']['layers'] == 12
    assert named['vision']['final_norm'] is False and named['text']['embed_cls'] is True
