"""Parity of tools/convert/albef_to_vlp.py on tiny random references.

The reference ALBEF is assembled from maintained libraries, under ALBEF's checkpoint key
names (salesforce/ALBEF ``model_pretrain.py`` / ``model_retrieval.py``): a timm
``VisionTransformer`` (ALBEF's ``models/vit.py`` has timm's parameter names and LayerNorm eps
1e-6) and a HF transformers ``BertForMaskedLM`` with cross-attention, whose cross-attention
weights in the first ``F`` (fusion_layer) layers are dropped as ALBEF's text layers have
none; random projections, ITM head, temperature and queues; a second, different set of
weights for the momentum twins. The reference outputs are computed with the HF / timm
modules only: image features ``normalize(vision_proj(ViT(x)[:, 0]))``, text features from
``bert.embeddings`` and layers ``< F`` (no image), fusion states from layers ``>= F`` with
``encoder_hidden_states`` = the image tokens, ITM logits from the ITM head on the fused
``[CLS]`` and MLM logits from HF's ``cls`` head. Converted through the command line entry
point and loaded with ``vlp.apis.init_model``, vlp's ALBEF must agree within 1e-5 (fp32)
for the online and the momentum encoders. No downloads.

transformers >= 5 refuses cross-attention in a BERT that is not a decoder, and a decoder's
self-attention is causal; the reference is therefore built with ``is_decoder=True``, eager
attention, ``is_causal=False`` on the self-attention modules and an explicit padding mask,
which makes its self-attention bidirectional as in ALBEF (checked below).
"""
import math
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import api_inputs, load_tool, tiny_vocab  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONVERT = osp.join(ROOT, 'tools', 'convert')


import vlp.convert as common  # noqa: E402  (check_state_dict, build_vlp_model)
albef_tool = load_tool('convert/albef_to_vlp')

ATOL = 1e-5
IMG, PATCH, WIDTH, VOCAB, MAX_POS = 32, 8, 32, 100, 40
LAYERS, FUSION = 4, 2  # BERT layers 0-1: text encoder, 2-3: fusion encoder
EMBED, QUEUE = 16, 24
QUEUE_BASE = 65536  # ALBEF-base queue (meta tensors only)
TEMP = 0.05
TINY_ARGS = ['--image-res', str(IMG), '--fusion-layer', str(FUSION), '--vision-heads', '2',
             '--text-heads', '2']


# -- the reference -----------------------------------------------------------------------
def _perturb(model: nn.Module, seed: int) -> None:
    """Add noise to every floating parameter (norm weights leave 1, biases leave 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _hidden(out):
    """A HF ``BertLayer`` output: a tensor (transformers >= 5) or a tuple led by it."""
    return out[0] if isinstance(out, tuple) else out


class _Reference(nn.Module):
    """One set of ALBEF weights (the online or the momentum model)."""

    def __init__(self, seed: int, depth: int = 2, width: int = WIDTH, heads: int = 2,
                 mlp: int = 64, layers: int = LAYERS, vocab: int = VOCAB,
                 max_pos: int = MAX_POS, img: int = IMG, patch: int = PATCH,
                 embed: int = EMBED):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer
        from transformers import BertConfig, BertForMaskedLM
        torch.manual_seed(seed)
        self.vit = VisionTransformer(img_size=img, patch_size=patch, embed_dim=width,
                                     depth=depth, num_heads=heads, mlp_ratio=mlp / width,
                                     num_classes=0)
        cfg = BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=mlp,
                         max_position_embeddings=max_pos, add_cross_attention=True,
                         is_decoder=True, attn_implementation='eager')
        self.bert = BertForMaskedLM(cfg)
        for layer in self.bert.bert.encoder.layer:
            layer.attention.self.is_causal = False  # bidirectional, as ALBEF's BERT
        self.vision_proj = nn.Linear(width, embed)
        self.text_proj = nn.Linear(width, embed)
        self.itm_head = nn.Linear(width, 2)
        self.eval()
        if not next(self.parameters()).is_meta:
            _perturb(self, seed)

    @torch.no_grad()
    def outputs(self, images, ids, mask):
        """Reference outputs, from the timm / HF modules only."""
        image_embeds = self.vit.forward_features(images)  # (B, N, C) after the final norm
        ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        h = self.bert.bert.embeddings(input_ids=ids)
        layers = self.bert.bert.encoder.layer
        for layer in layers[:FUSION]:
            h = _hidden(layer(h, attention_mask=ext))
        text_embeds = h
        for layer in layers[FUSION:]:
            h = _hidden(layer(h, attention_mask=ext, encoder_hidden_states=image_embeds))
        return dict(image_embeds=image_embeds,
                    image_feat=F.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1),
                    text_embeds=text_embeds,
                    text_feat=F.normalize(self.text_proj(text_embeds[:, 0]), dim=-1),
                    fused=h, itm=self.itm_head(h[:, 0]), mlm=self.bert.cls(h))


def albef_state_dict(ref: _Reference, ref_m: _Reference, layout: str = 'pretrain',
                     fusion: int = FUSION, seed: int = 0) -> dict:
    """The state dict of ``ALBEF`` (``model_pretrain.py`` or ``model_retrieval.py``) with
    ``ref``'s weights, ``ref_m``'s as the momentum twins."""
    bert = 'bert.' if layout == 'pretrain' else ''
    sd = {}
    for mom, r in (('', ref), ('_m', ref_m)):
        sd.update({f'visual_encoder{mom}.{k}': v for k, v in r.vit.state_dict().items()})
        for k, v in r.bert.bert.state_dict().items():
            m = re.match(r'encoder\.layer\.(\d+)\.crossattention\.', k)
            if m is not None and int(m.group(1)) < fusion:
                continue  # ALBEF's text layers have no cross-attention
            sd[f'text_encoder{mom}.{bert}{k}'] = v
        # the constant buffer older transformers versions saved
        sd[f'text_encoder{mom}.{bert}embeddings.position_ids'] = torch.arange(
            r.bert.config.max_position_embeddings)[None]
        if layout == 'pretrain':
            cls = f'text_encoder{mom}.cls.predictions.'
            sd.update({cls + k: v for k, v in r.bert.cls.predictions.state_dict().items()})
            # ALBEF's files hold the tied tensors under both names, whatever HF saves
            sd[cls + 'decoder.weight'] = r.bert.bert.embeddings.word_embeddings.weight.detach()
            sd[cls + 'decoder.bias'] = r.bert.cls.predictions.bias.detach()
        for name in ('vision_proj', 'text_proj'):
            sd.update({f'{name}{mom}.{k}': v
                       for k, v in getattr(r, name).state_dict().items()})
    sd.update({f'itm_head.{k}': v for k, v in ref.itm_head.state_dict().items()})
    embed = ref.vision_proj.out_features
    meta = next(ref.parameters()).is_meta
    if meta:
        sd.update(temp=torch.empty((), device='meta'),
                  image_queue=torch.empty(embed, QUEUE_BASE, device='meta'),
                  text_queue=torch.empty(embed, QUEUE_BASE, device='meta'),
                  queue_ptr=torch.zeros(1, dtype=torch.long))
        if layout == 'retrieval':
            sd['idx_queue'] = torch.empty(1, QUEUE_BASE, dtype=torch.long, device='meta')
        return sd
    g = torch.Generator().manual_seed(seed)
    sd['temp'] = torch.tensor(TEMP)
    sd['image_queue'] = F.normalize(torch.randn(embed, QUEUE, generator=g), dim=0)
    sd['text_queue'] = F.normalize(torch.randn(embed, QUEUE, generator=g), dim=0)
    sd['queue_ptr'] = torch.tensor([8])
    if layout == 'retrieval':
        sd['idx_queue'] = torch.randint(0, 50, (1, QUEUE), generator=g)
    return sd


@pytest.fixture(scope='module')
def refs():
    return _Reference(seed=0), _Reference(seed=1)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(3, 3, IMG, IMG, generator=g)
    ids = torch.randint(5, VOCAB, (3, 9), generator=g)
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padded captions
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    return images, ids, mask


def _write_checkpoint(path, sd):
    """As ALBEF's training scripts save it."""
    torch.save({'model': sd, 'optimizer': {'state': {}, 'param_groups': []},
                'config': {'image_res': IMG, 'queue_size': QUEUE}, 'epoch': 3}, str(path))


def _load(out_dir):
    from vlp.apis import init_model
    return init_model(osp.join(out_dir, 'config.py'), osp.join(out_dir, 'model.pth'),
                      device='cpu', strict=True)


def _err(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@torch.no_grad()
def _vlp_outputs(model, images, ids, mask, momentum=False):
    image_embeds, image_feat = model._image(images, momentum=momentum)
    text_embeds, text_feat = model._text(ids, mask, momentum=momentum)
    fused = model.fuse(text_embeds, mask, image_embeds, momentum=momentum)
    out = dict(image_embeds=image_embeds, image_feat=image_feat, text_embeds=text_embeds,
               text_feat=text_feat, fused=fused)
    if not momentum:  # ALBEF has no momentum ITM head
        out['itm'] = model.itm_logits(image_embeds, text_embeds, mask)
        assert _err(model.image_features(images), image_feat) == 0
        assert _err(model.text_features(ids, mask), text_feat) == 0
    head = model.mlm_head_m if momentum else model.mlm_head
    if head is not None:
        out['mlm'] = head(fused)
    return out


def test_reference_is_bidirectional(refs):
    """The HF reference's text layers see later tokens (no causal mask slipped in)."""
    ref = refs[0]
    images, ids, mask = _inputs()
    ids2 = ids.clone()
    ids2[0, 5] = 7 if ids[0, 5] != 7 else 8
    a = ref.outputs(images, ids, mask)['text_embeds'][0, 0]
    b = ref.outputs(images, ids2, mask)['text_embeds'][0, 0]
    assert (a - b).abs().max() > 1e-4


# -- parity ------------------------------------------------------------------------------
@pytest.mark.parametrize('layout', ['pretrain', 'retrieval'])
def test_albef_parity(tmp_path, refs, layout):
    ref, ref_m = refs
    sd = albef_state_dict(ref, ref_m, layout)
    ckpt = tmp_path / 'albef.pth'
    _write_checkpoint(ckpt, sd)
    out = str(tmp_path / 'vlp')
    albef_tool.main([str(ckpt), out] + TINY_ARGS)
    model = _load(out)

    images, ids, mask = _inputs()
    errs = {}
    for momentum, r in ((False, ref), (True, ref_m)):
        want = r.outputs(images, ids, mask)
        got = _vlp_outputs(model, images, ids, mask, momentum=momentum)
        if layout == 'retrieval':
            want.pop('mlm')
        if momentum:
            want.pop('itm')
        assert set(got) == set(want)
        for name in want:
            errs[('m_' if momentum else '') + name] = _err(got[name], want[name])
    print(f'{layout}: max abs differences', {k: f'{v:.2e}' for k, v in errs.items()})
    assert max(errs.values()) <= ATOL, errs
    # the momentum twins hold the momentum weights, not copies of the online ones
    with torch.no_grad():
        assert _err(model._image(images, momentum=True)[1], model._image(images)[1]) > 1e-2

    # temperature, queues, pointer
    assert math.isclose(model.itc.logit_scale.item(), math.log(1 / TEMP), rel_tol=1e-6)
    assert math.isclose(model.itc.get_logit_scale().item(), 1 / TEMP, rel_tol=1e-5)
    q = model.queue
    assert q.size == QUEUE
    assert torch.equal(q.image_queue, sd['image_queue'].t())
    assert torch.equal(q.text_queue, sd['text_queue'].t())
    assert int(q.ptr) == 8 and q.ptr.dim() == 0 and int(q.filled) == QUEUE
    if layout == 'retrieval':
        assert model.queue_ids and model.mlm_head is None and model.mlm_head_m is None
        assert torch.equal(q.idx_queue, sd['idx_queue'][0])
    else:
        assert not model.queue_ids and not hasattr(q, 'idx_queue')
        # the decoder stays tied to the word embeddings, online and momentum
        assert model.mlm_head.decoder.weight is model.text.word_embeddings.weight
        assert model.mlm_head_m.decoder.weight is model.text_m.word_embeddings.weight
        assert torch.equal(model.mlm_head.bias, sd['text_encoder.cls.predictions.bias'])


def test_convert_state_dict_api(refs):
    """``convert_albef_state_dict`` maps every key; the report lists what was skipped."""
    ref, ref_m = refs
    sd = albef_state_dict(ref, ref_m)
    state, rep = albef_tool.convert_albef(sd, fusion_layer=FUSION)
    assert (rep.layout, rep.fusion_layer, rep.num_bert_layers) == ('pretrain', FUSION, LAYERS)
    assert sorted(rep.ignored) == sorted(
        f'text_encoder{m}.{k}' for m in ('', '_m')
        for k in ('bert.embeddings.position_ids', 'cls.predictions.decoder.bias'))
    assert rep.added == ['queue.filled'] and rep.dropped == []
    cfg = albef_tool.albef_model_cfg(state, IMG, 'pretrain', 2, 2)
    common.check_state_dict(cfg, state)
    # fusion_layer=None reads it off the cross-attention weights
    assert albef_tool.convert_albef_state_dict(sd, fusion_layer=None).keys() == state.keys()
    # DDP's module. prefix
    wrapped = {'module.' + k: v for k, v in sd.items()}
    assert albef_tool.convert_albef_state_dict(wrapped, FUSION).keys() == state.keys()


# -- mismatches fail loudly ----------------------------------------------------------------
def test_mismatches_raise(refs):
    ref, ref_m = refs
    sd = albef_state_dict(ref, ref_m)
    conv = albef_tool.convert_albef_state_dict

    extra = dict(sd, **{'text_encoder.bert.pooler.dense.weight': torch.zeros(WIDTH, WIDTH)})
    with pytest.raises(KeyError, match=r'unexpected keys.*pooler'):
        conv(extra, FUSION)
    conv(extra, FUSION, drop=[r'text_encoder\.bert\.pooler\..*'])  # dropped on purpose
    with pytest.raises(KeyError, match='unexpected keys.*text_decoder'):  # ALBEF's VQA model
        conv(dict(sd, **{'text_decoder.bert.embeddings.LayerNorm.weight': torch.ones(3)}),
             FUSION)

    # split point disagreeing with the cross-attention weights
    with pytest.raises(KeyError, match=r'cross-attention weights sit in BERT layers \[2, 3\]'):
        conv(sd, fusion_layer=3)
    text_cross = dict(sd, **{'text_encoder.bert.encoder.layer.1.crossattention.self.query.'
                             'weight': torch.zeros(WIDTH, WIDTH)})
    with pytest.raises(KeyError, match=r'layers \[1, 2, 3\]'):
        conv(text_cross, FUSION)

    # an incomplete q/k/v group
    no_k = {k: v for k, v in sd.items()
            if k != 'text_encoder_m.bert.encoder.layer.3.attention.self.key.bias'}
    with pytest.raises(KeyError, match=r'fusion_m\.blocks\.1\.attn\.qkv\.bias'):
        conv(no_k, FUSION)

    # ALBEF ties decoder.weight to the embeddings and decoder.bias to bias; vlp relies on it
    untied = dict(sd, **{'text_encoder.cls.predictions.decoder.weight':
                         sd['text_encoder.cls.predictions.decoder.weight'] + 1})
    with pytest.raises(ValueError, match='word_embeddings'):
        conv(untied, FUSION)
    bias = dict(sd, **{'text_encoder_m.cls.predictions.decoder.bias':
                       sd['text_encoder_m.cls.predictions.decoder.bias'] + 1})
    with pytest.raises(ValueError, match='decoder.bias'):
        conv(bias, FUSION)

    # vlp keys left missing: caught by the check against the vlp model
    for gone, vlp_key in (('visual_encoder_m.norm.weight', 'vision_m.model.norm.weight'),
                          ('itm_head.bias', 'itm_head.fc.bias'),
                          ('text_encoder.cls.predictions.transform.dense.weight',
                           'mlm_head.dense.weight')):
        state = conv({k: v for k, v in sd.items() if k != gone}, FUSION)
        cfg = albef_tool.albef_model_cfg(state, IMG, 'pretrain', 2, 2)
        with pytest.raises(KeyError, match=re.escape(vlp_key)):
            common.check_state_dict(cfg, state)
    # retrieval layout without the image ids of its queue
    sd_r = albef_state_dict(ref, ref_m, 'retrieval')
    state = conv({k: v for k, v in sd_r.items() if k != 'idx_queue'}, FUSION)
    with pytest.raises(KeyError, match='queue.idx_queue'):
        common.check_state_dict(albef_tool.albef_model_cfg(state, IMG, 'retrieval', 2, 2),
                                state)
    # MLM head weights in a retrieval (BertModel) layout
    with pytest.raises(KeyError, match='unexpected keys.*cls'):
        conv(dict(sd_r, **{'text_encoder.cls.predictions.bias': torch.zeros(VOCAB)}), FUSION)


def test_parity_detects_a_wrong_mapping(tmp_path, refs):
    """Swapping the key/value halves of one cross-attention (a plausible fusion bug) or the
    two LayerNorms of a ViT block breaks parity far beyond the tolerance."""
    ref, ref_m = refs
    _write_checkpoint(tmp_path / 'albef.pth', albef_state_dict(ref, ref_m))
    out = str(tmp_path / 'vlp')
    albef_tool.main([str(tmp_path / 'albef.pth'), out] + TINY_ARGS)
    model = _load(out)
    images, ids, mask = _inputs()
    want = ref.outputs(images, ids, mask)
    with torch.no_grad():
        kv = model.fusion.blocks[0].cross_attn.kv.weight
        k, v = kv.clone().chunk(2, dim=0)
        kv.copy_(torch.cat([v, k], dim=0))
        vb = model.vision.model.blocks[1]
        w1, w2 = vb.norm1.weight.clone(), vb.norm2.weight.clone()
        vb.norm1.weight.copy_(w2)
        vb.norm2.weight.copy_(w1)
    got = _vlp_outputs(model, images, ids, mask)
    assert _err(got['itm'], want['itm']) > 1e3 * ATOL
    assert _err(got['image_feat'], want['image_feat']) > 1e3 * ATOL


# -- command line -----------------------------------------------------------------------------
def _tiny_vocab(path):
    return tiny_vocab(path, VOCAB)


def test_cli_script(tmp_path, refs):
    """The script runs as a script, copies the vocabulary and names it in the config;
    model.pth loads weights-only; init_model loads it and strings go through vlp's
    BertTokenizer to the reference's text features."""
    ref, ref_m = refs
    _write_checkpoint(tmp_path / 'albef.pth', albef_state_dict(ref, ref_m))
    vocab = _tiny_vocab(tmp_path / 'vocab.txt')
    out = tmp_path / 'vlp'
    res = subprocess.run([sys.executable, osp.join(CONVERT, 'albef_to_vlp.py'),
                          str(tmp_path / 'albef.pth'), str(out), '--vocab-file',
                          str(tmp_path / 'vocab.txt'), '--max-length', '12'] + TINY_ARGS,
                         cwd=str(tmp_path), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'pretrain layout, 4 BERT layers split at fusion_layer 2' in res.stdout
    assert 'ignored: ' in res.stdout and 'added: queue.filled' in res.stdout
    text = (out / 'config.py').read_text()
    assert "default_scope = 'vlp'" in text
    assert "vocab_file='{{ fileDirname }}/vocab.txt'" in text
    assert (out / 'vocab.txt').exists()
    ckpt = torch.load(str(out / 'model.pth'), map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['source'] == 'salesforce/ALBEF (pretrain layout)'
    assert ckpt['meta']['image_res'] == IMG and ckpt['meta']['fusion_layer'] == FUSION
    assert all(v.dtype == torch.float32 for v in ckpt['state_dict'].values()
               if v.is_floating_point())

    model = _load(str(out))
    tok = model.tokenizer(['a cat on the dog', 'the cat'])
    assert tok['input_ids'][0, :7].tolist() == [vocab[w] for w in (
        '[CLS]', 'a', 'cat', 'on', 'the', 'dog', '[SEP]')]
    images, _, _ = _inputs()
    want = ref.outputs(images[:2], tok['input_ids'], tok['attention_mask'])
    assert _err(model.encode_text(['a cat on the dog', 'the cat']), want['text_feat']) <= ATOL
    score = model.itm_score(images[:2], ['a cat on the dog', 'the cat'])
    assert _err(score, want['itm'].softmax(-1)[:, 1]) <= ATOL


def test_cli_refuses_other_resolution(tmp_path, refs):
    """Position embeddings are not interpolated: another --image-res is an error that
    names the checkpoint's resolution, and nothing is written."""
    ref, ref_m = refs
    _write_checkpoint(tmp_path / 'albef.pth', albef_state_dict(ref, ref_m))
    out = tmp_path / 'vlp'
    args = [str(tmp_path / 'albef.pth'), str(out), '--image-res', '48', '--fusion-layer',
            str(FUSION), '--vision-heads', '2', '--text-heads', '2']
    with pytest.raises(ValueError, match=r'pos_embed holds 17 tokens .*image_res 32'):
        albef_tool.main(args)
    assert not (out / 'model.pth').exists()
    with pytest.raises(ValueError, match='not divisible by 3 heads'):
        albef_tool.main([str(tmp_path / 'albef.pth'), str(out)] + TINY_ARGS
                        + ['--vision-heads', '3'])
    bad_vocab = tmp_path / 'vocab.txt'
    bad_vocab.write_text('[PAD]\n[CLS]\n')
    with pytest.raises(ValueError, match='holds 2 tokens'):
        albef_tool.main([str(tmp_path / 'albef.pth'), str(out), '--vocab-file',
                         str(bad_vocab)] + TINY_ARGS)


# -- ALBEF-base sizes (meta tensors: shapes only) --------------------------------------------
@pytest.mark.parametrize('layout,res', [('pretrain', 256), ('retrieval', 384)])
def test_albef_base_config(layout, res):
    """A checkpoint with ALBEF-base shapes (ViT-B/16, BERT-base 6 + 6 with 768-d
    cross-attention, 256-d ITC, 65,536-row queue) gives ALBEF-base's vlp config, and the
    converted names and shapes match the vlp model exactly."""
    with torch.device('meta'):
        base = [_Reference(seed=0, depth=12, width=768, heads=12, mlp=3072, layers=12,
                           vocab=30522, max_pos=512, img=res, patch=16, embed=256)
                for _ in range(2)]
    sd = albef_state_dict(*base, layout=layout, fusion=6)
    state, rep = albef_tool.convert_albef(sd)  # fusion_layer 6 by default
    assert rep.layout == layout
    cfg = albef_tool.albef_model_cfg(state, res, layout)  # 12 heads by default
    common.check_state_dict(cfg, state)
    v, t, f = cfg['vision'], cfg['text'], cfg['fusion']
    assert (v['model_name'], v['img_size'], v['patch_size'], v['embed_dim'], v['depth'],
            v['num_heads'], v['mlp_ratio']) == ('vit_base_patch16_224', res, 16, 768, 12, 12,
                                                4.0)
    assert (t['num_layers'], f['num_layers'], t['hidden_size'], t['num_heads'],
            t['intermediate_size'], t['vocab_size'], t['max_position_embeddings']) == (
                6, 6, 768, 12, 3072, 30522, 512)
    assert f['cross_attention_layers'] == 'all' and f['cross_attention_dim'] == 768
    assert cfg['vision_proj']['out_dim'] == cfg['text_proj']['out_dim'] == 256
    assert cfg['queue_size'] == 65536 and cfg['queue_ids'] == (layout == 'retrieval')
    assert ('mlm_head' in cfg) == (layout == 'pretrain')
    with pytest.raises(ValueError, match=f'image_res {res}'):
        albef_tool.albef_model_cfg(state, 640 - res, layout)



def test_public_api_matches_reference(tmp_path, refs):
    """Issue 19: the converted directory through ``vlp.apis`` only. uint8 images of another
    size (resized by the converted config's test pipeline) and raw strings give the
    reference's ITC features and similarities and its ITM probabilities, computed on the
    same preprocessed pixels and the same token ids."""
    from vlp import apis
    ref, ref_m = refs
    _write_checkpoint(tmp_path / 'albef.pth', albef_state_dict(ref, ref_m))
    _tiny_vocab(tmp_path / 'vocab.txt')
    out = str(tmp_path / 'vlp')
    albef_tool.main([str(tmp_path / 'albef.pth'), out, '--vocab-file',
                     str(tmp_path / 'vocab.txt'), '--max-length', '12'] + TINY_ARGS)
    model = apis.init_model(out)
    assert {'encode_image', 'encode_text', 'match'} <= set(apis.supported_tasks(model))
    images, texts, pixels, ids, mask = api_inputs(model, IMG, (48, 40), 3)
    img_want = ref.outputs(pixels, ids[:2], mask[:2])['image_feat']
    txt_want = ref.outputs(pixels[:1].expand(3, -1, -1, -1), ids, mask)['text_feat']
    itm_want = torch.stack([
        ref.outputs(pixels[i:i + 1].expand(3, -1, -1, -1), ids, mask)['itm'].softmax(-1)[:, 1]
        for i in range(2)])
    assert _err(apis.encode_image(model, images), img_want) <= ATOL
    assert _err(apis.encode_text(model, texts), txt_want) <= ATOL
    res = apis.match(model, images, texts)
    assert _err(res['itc'], img_want @ txt_want.t()) <= ATOL
    assert _err(res['itm'], itm_want) <= ATOL
    # the pairs differ: a wrong pairing or a constant head would not pass
    assert (itm_want.max() - itm_want.min()) > 10 * ATOL
