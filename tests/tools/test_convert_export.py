"""The conversion tables run backwards: vlp -> HF transformers / open_clip
(tools/convert/export.py), on tiny random models (no downloads).

For every export format:

- **round trip**: a reference model -> vlp (the import converter) -> the reference format
  (the exporter) gives the reference state dict back bit for bit (HF BLIP's unused
  ``cls.predictions.bias`` of an untied decoder excepted: the import reports it ignored),
  and the reference library loads the export;
- **parity**: a vlp model with its own (random, perturbed) weights, saved as a training
  run saves it, is exported; the reference implementation loads the export and gives the
  vlp model's outputs (embeddings / logits within 1e-5, fp32);
- what a reference cannot hold is refused, naming why.
"""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import load_tool  # noqa: E402
from safetensors.torch import load_file

from vlp.convert import build_vlp_model, export, read_checkpoint

transformers = pytest.importorskip('transformers')
open_clip = pytest.importorskip('open_clip')

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
EXPORT = osp.join(ROOT, 'tools', 'convert', 'export.py')
export_cli = load_tool('convert/export')
ATOL = 1e-5


def _perturb(model, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def _close(a, b, what=''):
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err = (a - b).abs().max().item()
    assert err <= ATOL, f'{what}: max abs difference {err:.3g} > {ATOL}'
    assert b.abs().max() > 1e-3, what  # not a trivial comparison


def _same_state(want, got, skip=()):
    want = {k: v for k, v in want.items() if k not in skip}
    assert set(got) - set(skip) == set(want), (set(got) ^ set(want))
    bad = [k for k in want if not torch.equal(want[k], got[k])]
    assert not bad, bad


def _vlp_checkpoint(model_cfg, path, seed=0):
    """A vlp model with its own weights, saved as mmengine's runner saves it."""
    torch.manual_seed(seed)
    model = _perturb(build_vlp_model(model_cfg), seed + 1)
    torch.save({'meta': dict(epoch=3), 'state_dict': model.state_dict(),
                'message_hub': dict(log_scalars={})}, str(path))
    return model


def _images(n=2, size=32, seed=3):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- CLIP --------------------------------------------------------------------------------------
def _hf_clip(tmp_path):
    from transformers import CLIPConfig, CLIPModel
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, hidden_act='quick_gelu')
    cfg = CLIPConfig(text_config=dict(tower, vocab_size=100, max_position_embeddings=16,
                                      eos_token_id=2, bos_token_id=1, pad_token_id=0),
                     vision_config=dict(tower, image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    ref = _perturb(CLIPModel(cfg))
    ref.save_pretrained(str(tmp_path / 'hf'))
    return ref


def test_hf_clip_round_trip(tmp_path):
    ref = _hf_clip(tmp_path)
    load_tool('convert/hf_clip_to_vlp').main([str(tmp_path / 'hf'), str(tmp_path / 'vlp')])
    export_cli.main(['--to', 'hf_clip', str(tmp_path / 'vlp' / 'config.py'),
                     str(tmp_path / 'vlp' / 'model.pth'), str(tmp_path / 'back')])
    _same_state(ref.state_dict(), load_file(str(tmp_path / 'back' / 'model.safetensors')))
    back = transformers.CLIPModel.from_pretrained(str(tmp_path / 'back'))
    _same_state(ref.state_dict(), back.state_dict())


def test_vlp_clip_demo_exports_to_hf_and_open_clip(tmp_path):
    """configs/clip/clip_tiny_demo.py with its own weights, through the script: both
    libraries load the export and give vlp's normalised embeddings; re-importing the HF
    export gives the vlp weights back bit for bit."""
    from vlp.convert import vlp_model_cfg
    config = osp.join(ROOT, 'configs', 'clip', 'clip_tiny_demo.py')
    model_cfg = vlp_model_cfg(config)
    model = _vlp_checkpoint(model_cfg, tmp_path / 'epoch_1.pth')
    size = model.vision.model.patch_embed.img_size[0]
    ctx, vocab = model.text.context_length, model.text.token_embedding.num_embeddings
    images = _images(size=size)
    ids = torch.zeros(2, ctx, dtype=torch.long)  # EOT = the largest id: argmax pooling
    ids[0, :4] = torch.tensor([1, 5, 9, vocab - 1])
    ids[1, :3] = torch.tensor([1, 7, vocab - 1])
    with torch.no_grad():
        want_img, want_txt = model.encode_image(images), model.encode_text(ids)
    for fmt in ('hf_clip', 'open_clip'):
        res = subprocess.run([sys.executable, EXPORT, '--to', fmt, config,
                              str(tmp_path / 'epoch_1.pth'), str(tmp_path / fmt)],
                             capture_output=True, text=True, cwd=str(tmp_path))
        assert res.returncode == 0, res.stderr
        assert 'wrote' in res.stdout
    hf = transformers.CLIPModel.from_pretrained(str(tmp_path / 'hf_clip')).eval()
    oc = open_clip.create_model('local-dir:' + str(tmp_path / 'open_clip')).eval()

    def feats(x):
        return x if torch.is_tensor(x) else x.pooler_output
    with torch.no_grad():
        _close(F.normalize(feats(hf.get_image_features(pixel_values=images)), dim=-1),
               want_img, 'HF image')
        _close(F.normalize(feats(hf.get_text_features(input_ids=ids)), dim=-1), want_txt,
               'HF text')
        _close(oc.encode_image(images, normalize=True), want_img, 'open_clip image')
        _close(oc.encode_text(ids, normalize=True), want_txt, 'open_clip text')
    assert hf.logit_scale.item() == oc.logit_scale.item() == model.itc.logit_scale.item()
    pre = json.loads((tmp_path / 'hf_clip' / 'preprocessor_config.json').read_text())
    assert pre['crop_size']['height'] == size
    # the in-memory model exports the same file
    export('hf_clip', config, model, str(tmp_path / 'from_model'))
    _same_state(load_file(str(tmp_path / 'hf_clip' / 'model.safetensors')),
                load_file(str(tmp_path / 'from_model' / 'model.safetensors')))
    # back into vlp: the same weights
    load_tool('convert/hf_clip_to_vlp').main([str(tmp_path / 'hf_clip'), str(tmp_path / 'again'),
                                              '--no-tokenizer'])
    _same_state(model.state_dict(), read_checkpoint(str(tmp_path / 'again' / 'model.pth')))


def test_open_clip_round_trip(tmp_path):
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    cfg = dict(embed_dim=16, vision_cfg=dict(image_size=32, patch_size=8, width=32, layers=2,
                                             head_width=16, mlp_ratio=2.0),
               text_cfg=dict(context_length=16, vocab_size=100, width=32, heads=2, layers=2))
    torch.manual_seed(0)
    ref = _perturb(open_clip.CLIP(16, vision_cfg=CLIPVisionCfg(**cfg['vision_cfg']),
                                  text_cfg=CLIPTextCfg(**cfg['text_cfg'])))
    torch.save(ref.state_dict(), str(tmp_path / 'oc.pt'))
    (tmp_path / 'oc.json').write_text(json.dumps(cfg))
    load_tool('convert/open_clip_to_vlp').main(['--model-config', str(tmp_path / 'oc.json'),
                                                '--checkpoint', str(tmp_path / 'oc.pt'),
                                                '--no-tokenizer', str(tmp_path / 'vlp')])
    out = export('open_clip', str(tmp_path / 'vlp' / 'config.py'),
                 str(tmp_path / 'vlp' / 'model.pth'), str(tmp_path / 'back'))
    _same_state(ref.state_dict(), load_file(out['weights']))
    again = open_clip.create_model('local-dir:' + str(tmp_path / 'back'))
    _same_state(ref.state_dict(), again.state_dict())


# -- CoCa --------------------------------------------------------------------------------------
@pytest.mark.parametrize('vision_width', [48, 32], ids=['kdim48', 'kdim32'])
def test_open_clip_coca_round_trip_and_parity(tmp_path, vision_width):
    """48: the pooler's separate q/k/v projections; 32: its fused in_proj_weight."""
    from vlp.convert.formats import coca
    cfg = dict(embed_dim=32,
               vision_cfg=dict(image_size=32, patch_size=8, width=vision_width, layers=2,
                               head_width=16, attentional_pool=True, attn_pooler_heads=4,
                               attn_pooler_queries=6, output_tokens=True),
               text_cfg=dict(context_length=12, vocab_size=64, width=32, heads=4, layers=2,
                             embed_cls=True, output_tokens=True),
               multimodal_cfg=dict(context_length=12, vocab_size=64, width=32, heads=4,
                                   layers=2))
    torch.manual_seed(0)
    ref = open_clip.CoCa(**cfg)
    with torch.no_grad():  # open_clip leaves it uninitialised
        torch.nn.init.normal_(ref.text_decoder.text_projection, std=0.1)
    _perturb(ref)
    torch.save(ref.state_dict(), str(tmp_path / 'coca.pt'))
    out = coca.convert(cfg, str(tmp_path / 'coca.pt'), str(tmp_path / 'vlp'), tokenizer=None)
    back = export('open_clip_coca', out['config'], out['checkpoint'], str(tmp_path / 'back'))
    _same_state(ref.state_dict(), load_file(back['weights']))

    # a vlp CoCa with its own weights, in open_clip's layout
    model = _vlp_checkpoint(out['model'], tmp_path / 'own.pth', seed=5)
    export('open_clip_coca', out['config'], str(tmp_path / 'own.pth'), str(tmp_path / 'own'))
    oc = open_clip.create_model('local-dir:' + str(tmp_path / 'own')).eval()
    assert type(oc).__name__ == 'CoCa'
    images = _images()
    ids = torch.zeros(2, 12, dtype=torch.long)
    ids[0, :5] = torch.tensor([62, 5, 9, 11, 63])
    ids[1, :3] = torch.tensor([62, 7, 63])
    with torch.no_grad():
        want = oc(images, ids)
        img = model.image_features(images)
        txt = model.text_features(ids, (ids != 0).long())
        logits = model.caption_logits(txt['text_hidden'][:, :-1], img['caption_tokens'])
    _close(img['image_feat'], want['image_features'], 'image')
    _close(txt['text_feat'], want['text_features'], 'text')
    _close(logits, want['logits'], 'caption logits')


# -- BLIP --------------------------------------------------------------------------------------
BLIP_VOCAB, DEC, ENC, SEP = 42, 40, 41, 3


def _hf_blip_config(tie=True):
    from transformers import BlipConfig
    text = dict(vocab_size=BLIP_VOCAB, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40,
                bos_token_id=DEC, sep_token_id=SEP, pad_token_id=0, eos_token_id=SEP,
                tie_word_embeddings=tie)
    vision = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, image_size=32, patch_size=8)
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=16,
                      tie_word_embeddings=tie)


@pytest.mark.parametrize('cls,tie', [('BlipForImageTextRetrieval', True),
                                     ('BlipForConditionalGeneration', True),
                                     ('BlipForConditionalGeneration', False)],
                         ids=['retrieval', 'captioning-tied', 'captioning-untied'])
def test_hf_blip_round_trip(tmp_path, cls, tie):
    from vlp.convert.formats import blip
    torch.manual_seed(0)
    ref = _perturb(getattr(transformers, cls)(_hf_blip_config(tie)))
    ref.save_pretrained(str(tmp_path / 'hf'))
    out = blip.convert(str(tmp_path / 'hf'), str(tmp_path / 'vlp'), queue_size=8)
    back = export('hf_blip', out['config'], out['checkpoint'], str(tmp_path / 'back'))
    assert back['reference'] == f'transformers.{cls}'
    # untied: HF's head adds decoder.bias only; predictions.bias (unused) is not imported
    skip = [] if tie else ['text_decoder.cls.predictions.bias']
    assert out['report'].ignored == skip
    _same_state(ref.state_dict(), load_file(str(tmp_path / 'back' / 'model.safetensors')),
                skip)
    _same_state(ref.state_dict(),
                getattr(transformers, cls).from_pretrained(str(tmp_path / 'back')).state_dict(),
                skip)


BLIP_CFG = dict(  # configs/blip/blip_tiny_demo.py's architecture at smaller sizes
    type='BLIP', data_preprocessor=dict(type='VLPDataPreprocessor'),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=32, patch_size=8,
                embed_dim=48, depth=2, num_heads=4),
    text=dict(type='BertEncoder', vocab_size=BLIP_VOCAB, hidden_size=32, num_layers=2,
              num_heads=4, intermediate_size=64, max_position_embeddings=24,
              type_vocab_size=0, cross_attention_layers='all', cross_attention_dim=48,
              hidden_dropout=0.0,
              attention_dropout=0.0),
    vision_proj=dict(type='Projection', in_dim=48, out_dim=16, bias=True),
    text_proj=dict(type='Projection', in_dim=32, out_dim=16, bias=True),
    itm_head=dict(type='ITMHead', hidden_size=32),
    lm_head=dict(type='MLMHead', hidden_size=32, vocab_size=BLIP_VOCAB),
    share_decoder=True, queue_size=8, enc_token_id=ENC, dec_token_id=DEC)


def test_vlp_blip_exports_as_retrieval_and_captioning(tmp_path):
    """A pre-training BLIP (ITC, ITM, LM; decoder sharing all but self-attention with
    the encoder): HF's retrieval model gives its similarities and ITM logits, HF's
    captioning model its next-token logits."""
    model = _vlp_checkpoint(BLIP_CFG, tmp_path / 'blip.pth')
    images = _images()
    ids = torch.randint(5, DEC, (2, 9), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, 6:], ids[1, 6:] = 0, 0
    ids[:, 0] = 2
    for kind in ('retrieval', 'captioning'):
        out = export('hf_blip', dict(model=BLIP_CFG), str(tmp_path / 'blip.pth'),
                     str(tmp_path / kind), kind=kind)
        assert 'vision_m.model.norm.weight' in out['report'].not_exported
        hf = getattr(transformers, out['reference'].split('.')[1]).from_pretrained(
            str(tmp_path / kind)).eval()
        with torch.no_grad():
            tokens = model.vision(images)['image_embeds']
            if kind == 'retrieval':
                _close(hf.vision_model(pixel_values=images).last_hidden_state, tokens,
                       'image tokens')
                sim = hf(input_ids=ids, pixel_values=images, attention_mask=mask,
                         use_itm_head=False).itm_score
                _close(sim, model.image_features(images) @ model.text_features(ids, mask).t(),
                       'ITC similarities')
                enc = ids.clone()
                enc[:, 0] = ENC
                itm = hf(input_ids=enc, pixel_values=images, attention_mask=mask,
                         use_itm_head=True).itm_score
                _close(itm, model.itm_logits(tokens, ids, mask), 'ITM logits')
            else:
                dec = ids.clone()
                dec[:, 0] = DEC
                want = hf(pixel_values=images, input_ids=dec, attention_mask=mask).logits
                _close(model.decoder_logits(dec, mask, tokens), want, 'LM logits')


# -- BLIP-2 ------------------------------------------------------------------------------------
NQ, LM_VOCAB, IMAGE_TOKEN = 4, 64, 63


def _hf_blip2_config(eps=1e-5):
    from transformers import Blip2Config, OPTConfig
    return Blip2Config(
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8,
                           layer_norm_eps=eps, qkv_bias=True),
        qformer_config=dict(vocab_size=50, hidden_size=32, num_hidden_layers=3,
                            num_attention_heads=4, intermediate_size=64,
                            max_position_embeddings=16, cross_attention_frequency=2,
                            encoder_hidden_size=48),
        text_config=OPTConfig(vocab_size=LM_VOCAB, hidden_size=40, num_hidden_layers=2,
                              ffn_dim=80, num_attention_heads=4, max_position_embeddings=64,
                              word_embed_proj_dim=40, pad_token_id=1, bos_token_id=2,
                              eos_token_id=2),
        num_query_tokens=NQ, image_token_index=IMAGE_TOKEN)


@pytest.mark.parametrize('post', ['ln_vision', 'vision_norm'])
def test_hf_blip2_round_trip_and_parity(tmp_path, post):
    from vlp.convert.formats import blip2
    torch.manual_seed(0)
    ref = _perturb(transformers.Blip2ForConditionalGeneration(_hf_blip2_config()))
    ref.save_pretrained(str(tmp_path / 'hf'))
    out = blip2.convert(str(tmp_path / 'hf'), str(tmp_path / 'vlp'), post_layernorm=post)
    back = export('hf_blip2', out['config'], out['checkpoint'], str(tmp_path / 'back'),
                  image_token_index=IMAGE_TOKEN)
    _same_state(ref.state_dict(), load_file(str(tmp_path / 'back' / 'model.safetensors')))
    assert set(back['report'].not_exported) == set(out['report'].left_at_init)

    # the vlp model with its own weights (its Q-Former text parts are not exported)
    model = _vlp_checkpoint(out['model'], tmp_path / 'own.pth', seed=7)
    export('hf_blip2', out['config'], str(tmp_path / 'own.pth'), str(tmp_path / 'own'),
           image_token_index=IMAGE_TOKEN)
    hf = transformers.Blip2ForConditionalGeneration.from_pretrained(str(tmp_path / 'own'))
    hf.eval()
    images = _images()
    prompt = torch.tensor([[2, 11, 12, 13]] * 2)
    text = torch.randint(4, IMAGE_TOKEN, (2, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(text)
    ids = torch.cat([torch.full((2, NQ), IMAGE_TOKEN), prompt, text], dim=1)
    with torch.no_grad():
        want_prompts = hf.get_image_features(pixel_values=images, return_dict=True)
        want_logits = hf(pixel_values=images, input_ids=ids).logits
        logits, _ = model.lm_logits(dict(images=images, input_ids=text, attention_mask=mask,
                                         prompt_ids=prompt))
        _close(model.visual_prompts(images), want_prompts.pooler_output, 'visual prompts')
    _close(logits, want_logits, 'LM logits')


def test_blip2_with_two_norms_is_refused():
    """vlp's BLIP-2 demo layout (the ViT's final norm *and* ln_vision) has no HF
    equivalent: HF holds one LayerNorm between the ViT and the Q-Former."""
    from vlp.convert.formats import blip2
    cfg = blip2.hf_blip2_model_cfg(_hf_blip2_config())
    cfg['vision'].pop('final_norm')
    with pytest.raises(NotImplementedError, match='it has both'):
        blip2.vlp_blip2_hf_config(cfg)


# -- ViLT --------------------------------------------------------------------------------------
def _vilt_config():
    from transformers import ViltConfig
    return ViltConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=48, image_size=32, patch_size=8,
                      max_position_embeddings=12, max_image_length=-1, pad_token_id=0)


@pytest.mark.parametrize('cls', ['ViltModel', 'ViltForMaskedLM',
                                 'ViltForImageAndTextRetrieval'])
def test_hf_vilt_round_trip(tmp_path, cls):
    from vlp.convert.formats import vilt
    torch.manual_seed(0)
    ref = _perturb(getattr(transformers, cls)(_vilt_config()))
    ref.save_pretrained(str(tmp_path / 'hf'))
    out = vilt.convert(str(tmp_path / 'hf'), str(tmp_path / 'vlp'))
    back = export('hf_vilt', out['config'], out['checkpoint'], str(tmp_path / 'back'))
    assert back['reference'] == f'transformers.{cls}'
    _same_state(ref.state_dict(), load_file(str(tmp_path / 'back' / 'model.safetensors')))
    getattr(transformers, cls).from_pretrained(str(tmp_path / 'back'))


VILT_CFG = dict(  # configs/vilt/vilt_tiny_demo.py's architecture at smaller sizes
    type='ViLT', data_preprocessor=dict(type='VLPDataPreprocessor'),
    backbone=dict(type='SingleStreamTransformer', img_size=32, patch_size=8, vocab_size=50,
                  max_text_len=12, embed_dim=32, depth=2, num_heads=4, mlp_ratio=4.0,
                  ln_eps=1e-12),
    itm_head=dict(type='ITMHead', hidden_size=32),
    mlm_head=dict(type='MLMHead', hidden_size=32, vocab_size=50))


def test_vlp_vilt_exports_mlm_and_retrieval(tmp_path):
    """HF has one head per model: the MLM logits and the retrieval score (the ITM
    log-odds, logit_1 - logit_0) of the vlp ViLT."""
    model = _vlp_checkpoint(VILT_CFG, tmp_path / 'vilt.pth')
    with pytest.raises(ValueError, match='choose kind'):
        export('hf_vilt', dict(model=VILT_CFG), str(tmp_path / 'vilt.pth'), str(tmp_path / 'x'))
    images = _images()
    ids = torch.randint(5, 50, (2, 9), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, 6:], ids[1, 6:] = 0, 0
    for kind in ('mlm', 'retrieval'):
        out = export('hf_vilt', dict(model=VILT_CFG), str(tmp_path / 'vilt.pth'),
                     str(tmp_path / kind), kind=kind)
        hf = getattr(transformers, out['reference'].split('.')[1]).from_pretrained(
            str(tmp_path / kind)).eval()
        with torch.no_grad():
            torch.manual_seed(0)  # HF permutes the patches at random (order-free here)
            got = hf(input_ids=ids, attention_mask=mask, pixel_values=images).logits
            fused = model.fuse(images, ids, mask)
            if kind == 'mlm':
                _close(got, model.mlm_head(fused['text_embeds']), 'MLM logits')
            else:
                itm = model.itm_head(fused['pooled'])
                _close(got[:, 0], itm[:, 1] - itm[:, 0], 'retrieval score')


# -- refusals ----------------------------------------------------------------------------------
def test_export_refuses_what_the_reference_cannot_hold(tmp_path):
    from vlp.convert import vlp_model_cfg
    coca_demo = vlp_model_cfg(osp.join(ROOT, 'configs', 'coca', 'coca_tiny_demo.py'))
    with pytest.raises(NotImplementedError, match="pooler_layout='shared'"):
        export('open_clip_coca', dict(model=coca_demo), {}, str(tmp_path / 'coca'))
    clip = vlp_model_cfg(osp.join(ROOT, 'configs', 'clip', 'clip_tiny_demo.py'))
    biased = dict(clip, vision_proj=dict(clip['vision_proj'], bias=True))
    with pytest.raises(NotImplementedError, match='vision_proj has bias=True'):
        export('hf_clip', dict(model=biased), {}, str(tmp_path / 'clip'))
    vit = dict(clip, vision=dict(clip['vision'], model_name='vit_base_patch16_224'))
    with pytest.raises(NotImplementedError, match='pre_norm=True'):
        export('hf_clip', dict(model=vit), {}, str(tmp_path / 'clip'))
    # a vlp key no rule exports is named, nothing is written
    model = build_vlp_model(clip)
    sd = dict(model.state_dict(), **{'extra.weight': torch.zeros(2)})
    with pytest.raises(KeyError, match='extra.weight'):
        export('hf_clip', dict(model=clip), sd, str(tmp_path / 'clip'))
    assert not (tmp_path / 'clip').exists()
