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


def _open_clip_generate(ref, image, **kw):
    """open_clip's own ``CoCa.generate`` (its sampling loop: ``generation_type`` 'top_k' /
    'top_p'). open_clip 3.3 imports transformers' ``BeamSearchScorer`` with its logits
    processors and disables ``generate`` when that fails (transformers 5 removed it): the
    processors it uses are still there and are handed to it here; its beam search (group
    beam search over ``BeamSearchScorer``) cannot run."""
    import transformers
    from open_clip import coca_model as oc
    names = ('LogitsProcessorList', 'TopPLogitsWarper', 'TopKLogitsWarper',
             'RepetitionPenaltyLogitsProcessor', 'MinLengthLogitsProcessor',
             'MaxLengthCriteria', 'StoppingCriteriaList')
    saved = {n: getattr(oc, n, None) for n in names + ('_has_transformers', 'GENERATION_TYPES')}
    try:
        for n in names:
            setattr(oc, n, getattr(transformers, n))
        oc._has_transformers = True
        oc.GENERATION_TYPES = dict(top_k=transformers.TopKLogitsWarper,
                                   top_p=transformers.TopPLogitsWarper,
                                   beam_search='beam_search')
        with torch.no_grad():
            return ref.generate(image, **kw)
    finally:
        for n, v in saved.items():
            if v is None:
                if hasattr(oc, n):
                    delattr(oc, n)
            else:
                setattr(oc, n, v)


@pytest.mark.parametrize('mode', ['greedy', 'nucleus'])
def test_cached_generate_matches_open_clip_generate(tmp_path, mode):
    """Converted weights decode the tokens of open_clip's ``CoCa.generate``, with and
    without vlp's key/value cache: greedy (open_clip's ``top_k=1``) and nucleus sampling
    (``top_p=0.9``) from the same seed, one image per call (open_clip draws only for its
    unfinished rows). open_clip writes EOT at ``seq_len`` where vlp stops at
    ``max_length``: compared up to ``seq_len - 1``."""
    from vlp.apis import init_model
    ref, cfg_file, ckpt = _oc_model(tmp_path)
    out = str(tmp_path / 'vlp')
    coca_tool.main(['--model-config', cfg_file, '--checkpoint', ckpt, '--no-tokenizer', out])
    model = init_model(osp.join(out, 'config.py'), osp.join(out, 'model.pth'), strict=True)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sot, eot, seq_len = V - 2, V - 1, CTX - 1
    oc_kw = (dict(generation_type='top_k', top_k=1) if mode == 'greedy'
             else dict(generation_type='top_p', top_p=0.9))
    vlp_kw = dict(num_beams=1, do_sample=mode != 'greedy', top_p=0.9)  # not the config's 6 beams
    lengths = []
    for i in range(images.shape[0]):
        torch.manual_seed(100 + i)
        want = _open_clip_generate(ref, images[i:i + 1], seq_len=seq_len, min_seq_len=3,
                                   sot_token_id=sot, eos_token_id=eot, pad_token_id=0,
                                   **oc_kw)[:, :seq_len - 1]
        for use_cache in (True, False):
            torch.manual_seed(100 + i)
            with torch.no_grad():
                got = model.generate_ids(images[i:i + 1], [sot], eos_token_id=eot,
                                         pad_token_id=0, max_length=seq_len - 1,
                                         min_length=3, use_cache=use_cache, **vlp_kw)
            assert got.tolist() == want.tolist(), (mode, i, use_cache)
        lengths.append(int((want != 0).sum()))
    assert max(lengths) > 4  # real captions, not an immediate EOT


def test_vocabulary_checks_and_the_api(tmp_path):
    """The vocabulary written is the weights': an open_clip config that disagrees with the
    text embedding is refused naming ``--model-config``; a tokenizer with more tokens than
    the weights (open_clip's 49,408-token BPE for a 64-token model) is refused naming
    ``--tokenizer`` / ``--no-tokenizer``; the converted model through ``vlp.apis`` (any
    image size, uint8) equals open_clip on the same preprocessed pixels."""
    import json

    from vlp import apis
    ref, cfg_file, ckpt = _oc_model(tmp_path)
    cfg = json.loads(open(cfg_file).read())
    cfg['text_cfg']['vocab_size'] = cfg['multimodal_cfg']['vocab_size'] = 100
    wrong = str(tmp_path / 'wrong.json')
    with open(wrong, 'w') as f:
        json.dump(cfg, f)
    with pytest.raises(ValueError, match=r'64 rows .*vocab_size=100.*--model-config'):
        coca_tool.main(['--model-config', wrong, '--checkpoint', ckpt, '--no-tokenizer',
                        str(tmp_path / 'a')])
    with pytest.raises(ValueError, match=r'49,?408.*--tokenizer|--tokenizer.*49,?408'):
        coca_tool.main(['--model-config', cfg_file, '--checkpoint', ckpt,
                        str(tmp_path / 'b')])
    out = str(tmp_path / 'c')
    coca_tool.main(['--model-config', cfg_file, '--checkpoint', ckpt, '--no-tokenizer', out])
    model = apis.init_model(out)
    from mmengine.config import Config
    assert Config.fromfile(osp.join(out, 'config.py')).model.text.vocab_size == V
    images = torch.randint(0, 256, (2, 3, 50, 41), dtype=torch.uint8)
    with torch.no_grad():
        want = F.normalize(ref.encode_image(apis.preprocess(model, images)), dim=-1)
    _assert_close(apis.encode_image(model, images), want)
    _assert_close(apis.encode_text(model, _texts()),
                  F.normalize(ref.encode_text(_texts()), dim=-1))
