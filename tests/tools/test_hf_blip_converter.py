"""Parity of tools/convert/hf_blip_to_vlp.py with HF transformers' BLIP on tiny random
models (built in-process, perturbed so that no weight sits at its init; no downloads).

- ``BlipForImageTextRetrieval`` (converted through the command-line script from a
  ``save_pretrained`` directory): image and text features, their similarities
  (``use_itm_head=False``) and ITM logits (``use_itm_head=True``, ids led by [ENC]: vlp
  puts [ENC] first, HF uses the ids as given);
- ``BlipForConditionalGeneration``, with HF's tied output layer (through ``main`` from a
  ``save_pretrained`` directory, which omits the tied copies) and untied
  (``tie_word_embeddings=False``, from the in-memory state dict): the decoder's next-token
  logits and greedy / beam-search / nucleus (same seed) captions of ``BLIP.generate``, with
  and without its key/value cache, against HF ``generate``,
  without and with a prompt.

vlp's model is built from the written config and loaded strictly with
``vlp.apis.init_model``; outputs agree within 1e-5 (fp32).
"""
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip('transformers')
from transformers import (BlipConfig, BlipForConditionalGeneration,  # noqa: E402
                          BlipForImageTextRetrieval)
from conftest import load_tool  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONVERT = osp.join(ROOT, 'tools', 'convert')


import vlp.convert as common  # noqa: E402  (check_state_dict, build_vlp_model)
blip_tool = load_tool('convert/hf_blip_to_vlp')

ATOL = 1e-5
IMG, PATCH, V_WIDTH, T_WIDTH, EMBED = 32, 8, 48, 32, 16
WORDS = ['a', 'picture', 'of', 'cat', 'dog', 'on', 'the', 'red', 'blue', 'table', 'sits',
         'runs', 'two', 'small', 'big', 'with', 'and', 'in', 'grass', 'car', 'man', 'woman',
         'is', 'holding', 'ball', 'green', 'near', 'tree', 'sky', 'water', 'street',
         'house', 'bird', 'flying', 'over']
SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
BASE_VOCAB = len(SPECIALS) + len(WORDS)  # 40 in vocab.txt
VOCAB = BASE_VOCAB + 2  # + [DEC] (40) and [ENC] (41) appended by the tokenizer
DEC, ENC, CLS, SEP, PAD = BASE_VOCAB, BASE_VOCAB + 1, 2, 3, 0
QUEUE = 32


def _hf_config(tie: bool = True) -> BlipConfig:
    text = dict(vocab_size=VOCAB, hidden_size=T_WIDTH, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40,
                bos_token_id=DEC, sep_token_id=SEP, pad_token_id=PAD, eos_token_id=SEP,
                tie_word_embeddings=tie)
    vision = dict(hidden_size=V_WIDTH, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, image_size=IMG, patch_size=PATCH,
                  initializer_range=0.02)
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=EMBED,
                      tie_word_embeddings=tie)


def _perturb(model, seed: int):
    """Noise on every parameter (tied ones once), so norms leave 1 and biases 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.fixture(scope='module')
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('vocab') / 'vocab.txt'
    path.write_text('\n'.join(SPECIALS + WORDS) + '\n')
    return str(path)


@pytest.fixture(scope='module')
def hf_retrieval():
    torch.manual_seed(0)
    return _perturb(BlipForImageTextRetrieval(_hf_config()), 1)


def _hf_captioner(tie: bool):
    torch.manual_seed(2)
    return _perturb(BlipForConditionalGeneration(_hf_config(tie)), 3)


def _inputs(first: int = CLS):
    g = torch.Generator().manual_seed(4)
    images = torch.randn(3, 3, IMG, IMG, generator=g)
    lengths = [9, 6, 4]
    ids = torch.randint(len(SPECIALS), BASE_VOCAB, (3, 9), generator=g)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n - 1] = SEP
    ids[mask == 0] = PAD
    ids[:, 0] = first
    return images, ids, mask


def _load(out_dir):
    from vlp.apis import init_model
    return init_model(osp.join(out_dir, 'config.py'), osp.join(out_dir, 'model.pth'),
                      device='cpu', strict=True)


def _err(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def _report(name, errs):
    print(f'{name}: max abs differences', {k: f'{v:.1e}' for k, v in errs.items()})
    assert max(errs.values()) <= ATOL, errs


def _assert_twins_copied(model):
    for online, mom in model.momentum_pairs():
        a, b = online.state_dict(), mom.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- retrieval -----------------------------------------------------------------------------
def test_retrieval_parity(tmp_path, hf_retrieval, vocab_file):
    """Through the script (vocab.txt picked up from the HF directory): features,
    similarities and ITM logits equal HF's; twins are copies; the report names the parts
    left at init (temperature, queue)."""
    hf = hf_retrieval
    src = tmp_path / 'hf'
    hf.save_pretrained(str(src))
    shutil.copy(vocab_file, src / 'vocab.txt')
    out = tmp_path / 'vlp'
    res = subprocess.run([sys.executable, osp.join(CONVERT, 'hf_blip_to_vlp.py'), str(src),
                          str(out), '--queue-size', str(QUEUE), '--max-length', '12'],
                         cwd=str(tmp_path), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f'retrieval model; tie_lm_head=True; [ENC]={ENC}, [DEC]={DEC}' in res.stdout
    assert 'left at init: itc.logit_scale, queue.* (' in res.stdout
    assert (out / 'vocab.txt').exists()
    text = (out / 'config.py').read_text()
    assert "model_name='vit_base_patch16_clip_224'" in text and 'pre_norm=False' in text
    ckpt = torch.load(str(out / 'model.pth'), map_location='cpu', weights_only=True)
    assert ckpt['meta']['source'] == 'transformers.BlipForImageTextRetrieval'

    model = _load(str(out))
    assert model.decoder is None and model.lm_head is None and model.queue_ids
    assert (model.enc_token_id, model.dec_token_id) == (ENC, DEC)
    assert model.tokenizer.token_to_id('[ENC]') == ENC
    _assert_twins_copied(model)
    assert math.isclose(model.itc.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    assert model.queue.size == QUEUE

    images, ids, mask = _inputs()
    enc_ids = ids.clone()
    enc_ids[:, 0] = ENC
    with torch.no_grad():
        vis = hf.vision_model(pixel_values=images).last_hidden_state
        want_img = F.normalize(hf.vision_proj(vis[:, 0]), dim=-1)
        itc = hf(input_ids=ids, pixel_values=images, attention_mask=mask,
                 use_itm_head=False)
        want_txt = F.normalize(hf.text_proj(itc.question_embeds[:, 0]), dim=-1)
        itm = hf(input_ids=enc_ids, pixel_values=images, attention_mask=mask,
                 use_itm_head=True).itm_score
        image_embeds = model.vision(images)['image_embeds']
        img, txt = model.image_features(images), model.text_features(ids, mask)
        errs = dict(image_embeds=_err(image_embeds, vis), image_feat=_err(img, want_img),
                    text_embeds=_err(model.text(ids, mask)['text_embeds'],
                                     itc.question_embeds),
                    text_feat=_err(txt, want_txt),
                    similarity=_err(img @ txt.t(), itc.itm_score),
                    itm=_err(model.itm_logits(image_embeds, ids, mask), itm))
    _report('retrieval', errs)
    assert itm.abs().max() > 1e-2  # not a trivially zero comparison


def test_enc_token_keep_and_dec_token_id_through_the_api(tmp_path, hf_retrieval,
                                                         vocab_file):
    """A checkpoint whose ``bos_token_id`` lies outside the vocabulary is refused with the
    option to pass; ``--dec-token-id`` names [DEC]; ``--enc-token keep`` encodes the ids as
    given, so ``vlp.apis.match`` (text in, probabilities out) equals HF's
    ``BlipForImageTextRetrieval`` on the same pixels and ids; the written directory holds
    the evaluation configs."""
    src = tmp_path / 'hf'
    hf_retrieval.save_pretrained(str(src))
    cfg_file = src / 'config.json'
    cfg = json.loads(cfg_file.read_text())
    cfg['text_config']['bos_token_id'] = VOCAB + 7  # as some exported checkpoints have it
    cfg_file.write_text(json.dumps(cfg))
    args = [str(src), str(tmp_path / 'out'), '--vocab-file', vocab_file, '--queue-size',
            str(QUEUE), '--max-length', '12', '--enc-token', 'keep']
    with pytest.raises(ValueError, match=r'bos_token_id 49 .*--dec-token-id'):
        blip_tool.main(args)
    with pytest.raises(ValueError, match=r'dec 40 != 43 \(--dec-token-id'):
        blip_tool.main(args + ['--dec-token-id', str(VOCAB + 1)])  # not the vocabulary's
    out = blip_tool.main(args + ['--dec-token-id', str(DEC)])
    folder = tmp_path / 'out'
    assert {'eval_retrieval_coco.py', 'eval_retrieval_flickr30k.py'} <= set(
        os.listdir(folder))
    from vlp import apis
    model = apis.init_model(str(folder))
    assert model.use_enc_token is False and model.dec_token_id == DEC
    assert out['report'].dec_token_id == DEC
    g = torch.Generator().manual_seed(9)
    images = torch.randint(0, 256, (2, 3, 45, 37), dtype=torch.uint8, generator=g)
    texts = ['a cat sits on the table', 'two dog runs in grass near the tree', 'a bird']
    got = apis.match(model, images, texts)
    pixels = apis.preprocess(model, images)
    tok = model.tokenize(texts)
    ids, mask = tok['input_ids'], tok['attention_mask']
    assert (ids[:, 0] == CLS).all()
    rows = torch.arange(2).repeat_interleave(3)
    cols = torch.arange(3).repeat(2)
    with torch.no_grad():
        itm = hf_retrieval(input_ids=ids[cols], pixel_values=pixels[rows],
                           attention_mask=mask[cols], use_itm_head=True).itm_score
        itc = hf_retrieval(input_ids=ids[cols], pixel_values=pixels[rows],
                           attention_mask=mask[cols], use_itm_head=False).itm_score
    want_itm = itm.softmax(-1)[:, 1].view(2, 3)
    want_itc = itc.diagonal().view(2, 3)
    _report('apis.match vs HF', dict(itm=_err(got['itm'], want_itm),
                                     itc=_err(got['itc'], want_itc)))
    assert (want_itm - want_itm.mean()).abs().max() > 1e-3  # the pairs differ


# -- captioning ----------------------------------------------------------------------------
def _generated_ids(model, images, prompt, **decoding):
    """Captions of ``BLIP.generate`` and the token ids it decoded."""
    seen = []
    decode = model.tokenizer.decode

    def record(ids, *args, **kwargs):
        seen.append(list(ids.tolist() if torch.is_tensor(ids) else ids))
        return decode(ids, *args, **kwargs)

    model.tokenizer.decode = record
    try:
        captions = model.generate(images, prompt=prompt, **decoding)
    finally:
        model.tokenizer.decode = decode
    return captions, seen


def _trim(ids):
    """Generated ids up to the first [SEP] (inclusive), padding dropped (HF's beam search
    pads with [SEP] when pad_token_id is 0: a documented vlp deviation)."""
    ids = list(ids)
    if SEP in ids:
        ids = ids[:ids.index(SEP) + 1]
    return [i for i in ids if i != PAD]


@pytest.mark.parametrize('tie', [True, False], ids=['tied', 'untied'])
def test_captioning_parity(tmp_path, vocab_file, tie):
    hf = _hf_captioner(tie)
    sd = hf.state_dict()
    emb = sd['text_decoder.bert.embeddings.word_embeddings.weight']
    assert torch.equal(sd['text_decoder.cls.predictions.decoder.weight'], emb) == tie
    out = tmp_path / 'vlp'
    if tie:  # from a save_pretrained directory, which omits the tied copies
        src = tmp_path / 'hf'
        hf.save_pretrained(str(src))
        res = blip_tool.main([str(src), str(out), '--vocab-file', vocab_file,
                              '--queue-size', str(QUEUE), '--max-length', '12'])
    else:
        res = blip_tool.convert(sd, str(out), config=hf.config.to_dict(), tokenizer=vocab_file,
                                max_length=12, queue_size=QUEUE)
    rep = res['report']
    assert rep.kind == 'captioning' and rep.tie_lm_head == tie
    # a BLIPCaption, as HF's model: the ViT and the decoder, nothing left at init
    assert res['model']['type'] == 'BLIPCaption'
    assert rep.left_at_init == [] and rep.momentum_copies == []
    if not tie:  # HF's head adds decoder.bias; predictions.bias is unused when untied
        assert rep.ignored == ['text_decoder.cls.predictions.bias']

    # the captioning evaluation beside the weights: BLIP's recipe (configs/blip/
    # blip_caption_coco.py: its prompt, beam 3, lengths 5-20), strict-loadable
    from mmengine.config import Config
    ev = Config.fromfile(str(out / 'eval_caption_coco.py'))
    assert ev.model.prompt == 'a picture of ' and ev.model.predict_mode == 'caption'
    assert ev.model.generation_cfg == dict(num_beams=3, max_length=20, min_length=5)
    assert ev.test_evaluator.type == 'CaptionMetric'
    load_tool('test').check_checkpoint(ev, res['checkpoint'])

    model = _load(str(out))
    assert type(model).__name__ == 'BLIPCaption'
    assert {k.split('.')[0] for k in model.state_dict()} == {'vision', 'decoder', 'lm_head'}
    assert (model.lm_head.decoder.weight is model.decoder.word_embeddings.weight) == tie

    images, ids, mask = _inputs(first=DEC)
    with torch.no_grad():
        want = hf(pixel_values=images, input_ids=ids, attention_mask=mask).logits
        got = model.decoder_logits(ids, mask, model.vision(images)['image_embeds'])
    errs = dict(logits=_err(got, want))

    # generation: greedy and beam search, unconditional and with a prompt
    tok = model.tokenizer
    prompt = 'a picture of'
    prompt_ids = torch.tensor([tok.encode(prompt)] * images.shape[0])
    assert prompt_ids[0].tolist() == [CLS, 0 + 5, 1 + 5, 2 + 5, SEP]
    # (vlp with its key/value cache, the default, and without: the uncached reference;
    # nucleus sampling from the same seed: both draw one multinomial per row and step)
    for name, opts in (('greedy', dict(num_beams=1, do_sample=False)),
                       ('beam3', dict(num_beams=3, do_sample=False)),
                       ('nucleus', dict(num_beams=1, do_sample=True, top_p=0.9))):
        for p, hf_ids in (('', None), (prompt, prompt_ids)):
            n_prompt = 1 if hf_ids is None else hf_ids.shape[1] - 1  # [DEC] + prompt
            torch.manual_seed(7)
            with torch.no_grad():
                ref = hf.generate(pixel_values=images, input_ids=None if hf_ids is None
                                  else hf_ids.clone(), max_length=12, min_length=0, **opts)
            if hf_ids is not None:
                assert ref[:, 1:n_prompt].tolist() == prompt_ids[:, 1:-1].tolist()
            want_ids = [_trim(r[n_prompt:].tolist()) for r in ref]
            for use_cache in (True, False):
                torch.manual_seed(7)
                captions, seen = _generated_ids(model, images, p, max_length=12, min_length=0,
                                                use_cache=use_cache, **opts)
                assert [_trim(s) for s in seen] == want_ids, (name, p, use_cache)
                assert captions == [tok.decode(r[n_prompt:]) for r in ref]
            assert sum(len(w) for w in want_ids) > 3 * len(want_ids)  # real captions
    _report(f'captioning ({"tied" if tie else "untied"})', errs)


# -- failures --------------------------------------------------------------------------------
def test_unknown_and_mismatched_keys_raise(hf_retrieval, vocab_file):
    sd = dict(hf_retrieval.state_dict())
    cfg = hf_retrieval.config.to_dict()
    conv = blip_tool.convert_hf_blip_state_dict
    state, rep = conv(sd)
    assert rep.kind == 'retrieval' and rep.ignored == [] and rep.dropped == []
    assert 'text.blocks.1.cross_attn.kv.weight' in state
    for extra in ('foo.weight', 'text_encoder.encoder.layer.0.bogus.weight',
                  'vision_model.encoder.layers.0.self_attn.q_proj.weight',
                  'text_encoder.pooler.dense.weight'):
        bad = dict(sd, **{extra: torch.zeros(2)})
        with pytest.raises(KeyError, match=r'unexpected|does not have'):
            blip_tool.convert_hf_blip(bad, cfg, queue_size=QUEUE)
    # dropped on purpose; legacy position_ids buffers are ignored
    bad = dict(sd, **{'foo.weight': torch.zeros(2),
                      'text_encoder.embeddings.position_ids': torch.arange(40)[None]})
    state2, rep = conv(bad, drop=[r'foo\..*'])
    assert rep.dropped == ['foo.weight'] and rep.ignored == [
        'text_encoder.embeddings.position_ids'] and state2.keys() == state.keys()
    with pytest.raises(KeyError, match='both'):
        conv(dict(sd, **{'text_decoder.bert.embeddings.word_embeddings.weight':
                         torch.zeros(VOCAB, T_WIDTH)}))
    wrong = dict(sd)
    wrong['itm_head.weight'] = torch.zeros(3, T_WIDTH)
    with pytest.raises(ValueError, match='shape mismatch'):
        blip_tool.convert_hf_blip(wrong, cfg, queue_size=QUEUE)
    # a vocabulary that disagrees with the HF config
    with pytest.raises(ValueError, match='vocab_size'):
        blip_tool.special_token_ids(dict(cfg, text_config=dict(cfg['text_config'],
                                                                vocab_size=50)), vocab_file)
    assert blip_tool.special_token_ids(cfg, vocab_file) == (ENC, DEC)
    assert blip_tool.special_token_ids(cfg) == (DEC + 1, DEC)


def test_blip_base_config():
    """BLIP-base sizes (HF's default ``BlipConfig``, meta tensors): renamed keys and
    shapes fit the vlp model of the written config; [ENC] defaults to 30523."""
    config = BlipConfig()
    with torch.device('meta'):
        hf = BlipForImageTextRetrieval(config)
    state, rep = blip_tool.convert_hf_blip_state_dict(hf.state_dict())
    enc, dec = blip_tool.special_token_ids(config)
    assert (enc, dec) == (30523, 30522)
    cfg = blip_tool.hf_blip_model_cfg(config, rep.kind, enc)
    own = common.build_vlp_model(cfg, device='meta').state_dict()
    assert not set(state) - set(own)
    assert all(own[k].shape == v.shape for k, v in state.items())
    assert sorted({k.split('.')[0] for k in set(own) - set(state)}) == [
        'itc', 'queue', 'text_m', 'text_proj_m', 'vision_m', 'vision_proj_m']
    v = cfg['vision']
    assert (v['img_size'], v['patch_size'], v['embed_dim'], v['depth'], v['num_heads'],
            v['mlp_ratio']) == (384, 16, 768, 12, 12, 4.0)
    assert cfg['queue_size'] == 57600 and cfg['text']['vocab_size'] == 30524
