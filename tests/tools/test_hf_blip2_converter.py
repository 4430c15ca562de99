"""Parity of tools/convert/hf_blip2_to_vlp.py with HF transformers' BLIP-2 on tiny random
models (built in-process, perturbed so that no weight sits at its init; no downloads).

``Blip2ForConditionalGeneration`` with a tiny OPT: converted through the script from a
``save_pretrained`` directory (which omits OPT's tied output matrix) and from the
in-memory state dict; vlp's ``BLIP2LM`` is built from the written config and loaded
strictly with ``vlp.apis.init_model``. Compared: the Q-Former's query states for given
``pixel_values`` and the LM logits for ``pixel_values`` + a prompt + target text (HF:
``num_query_tokens`` ``image_token_index`` placeholders before ``BOS prompt text``, as
``Blip2Processor`` builds them; vlp: the visual prompts, then ``prompt_ids = BOS prompt``,
then the targets). Within 1e-5 (fp32) when HF's ``post_layernorm`` goes to ``ln_vision``
with the vision LayerNorm eps 1e-5, and for eps 1e-6 when it goes to the ViT's final norm.
"""
import os.path as osp
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip('transformers')
from transformers import Blip2Config, Blip2ForConditionalGeneration  # noqa: E402
from conftest import load_tool  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONVERT = osp.join(ROOT, 'tools', 'convert')


import vlp.convert as common  # noqa: E402  (check_state_dict, build_vlp_model)
blip2_tool = load_tool('convert/hf_blip2_to_vlp')

ATOL = 1e-5
IMG, PATCH, V_WIDTH, Q_WIDTH, LM_WIDTH, NQ = 32, 8, 48, 32, 40, 4
LM_VOCAB, BOS, PAD, IMAGE_TOKEN = 64, 2, 1, 63


def _hf_config(eps: float = 1e-5) -> Blip2Config:
    vision = dict(hidden_size=V_WIDTH, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, image_size=IMG, patch_size=PATCH,
                  layer_norm_eps=eps, qkv_bias=True)
    qformer = dict(vocab_size=50, hidden_size=Q_WIDTH, num_hidden_layers=3,
                   num_attention_heads=4, intermediate_size=64, max_position_embeddings=16,
                   cross_attention_frequency=2, encoder_hidden_size=V_WIDTH)
    text = transformers.OPTConfig(vocab_size=LM_VOCAB, hidden_size=LM_WIDTH,
                                  num_hidden_layers=2, ffn_dim=80, num_attention_heads=4,
                                  max_position_embeddings=64, word_embed_proj_dim=LM_WIDTH,
                                  pad_token_id=PAD, bos_token_id=BOS, eos_token_id=BOS)
    return Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text,
                       num_query_tokens=NQ, image_token_index=IMAGE_TOKEN)


def _hf_model(eps: float, seed: int):
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(_hf_config(eps))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # noise on every parameter (tied ones once)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _inputs():
    g = torch.Generator().manual_seed(7)
    images = torch.randn(2, 3, IMG, IMG, generator=g)
    prompt = torch.tensor([[BOS, 11, 12, 13]] * 2)
    text = torch.randint(4, IMAGE_TOKEN, (2, 6), generator=g)
    mask = torch.ones_like(text)
    mask[1, 4:] = 0  # a padded row
    text[1, 4:] = PAD
    return images, prompt, text, mask


def _load(out_dir):
    from vlp.apis import init_model
    return init_model(osp.join(out_dir, 'config.py'), osp.join(out_dir, 'model.pth'),
                      device='cpu', strict=True)


def _err(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def _parity(hf, model):
    """Max abs differences of the Q-Former query states, the visual prompts and the LM
    logits (real positions only)."""
    images, prompt, text, mask = _inputs()
    B, P, L = images.shape[0], prompt.shape[1], text.shape[1]
    ids = torch.cat([torch.full((B, NQ), IMAGE_TOKEN), prompt, text], dim=1)
    att = torch.cat([torch.ones(B, NQ + P, dtype=torch.long), mask], dim=1)
    with torch.no_grad():
        feats = hf.get_image_features(pixel_values=images, return_dict=True)
        want_q = feats.qformer_outputs.last_hidden_state
        want_logits = hf(pixel_values=images, input_ids=ids, attention_mask=att).logits
        tokens = model.vision(images)['image_embeds']
        if model.ln_vision is not None:
            tokens = model.ln_vision(tokens)
        got_q = model.qformer(image_embeds=tokens)['query_embeds']
        got_prompts = model.visual_prompts(images)
        logits, labels = model.lm_logits(dict(images=images, input_ids=text,
                                              attention_mask=mask, prompt_ids=prompt))
    real = att.bool()
    assert logits.shape == want_logits.shape
    assert (labels[:, NQ + P:] != -100).eq(mask.bool()).all()
    errs = dict(query=_err(got_q, want_q),
                prompts=_err(got_prompts, feats.pooler_output),
                logits=(logits[real] - want_logits[real]).abs().max().item())
    assert want_q.abs().max() > 0.1 and want_logits.abs().max() > 0.1  # not trivial
    return errs


@pytest.fixture(scope='module')
def hf_blip2():
    return _hf_model(1e-5, 0)


def test_script_parity_ln_vision(tmp_path, hf_blip2):
    """Through the script from a save_pretrained directory (no tied lm_head in the
    file): post_layernorm -> ln_vision, timm ViT without its final norm."""
    src = tmp_path / 'hf'
    hf_blip2.save_pretrained(str(src))
    out = tmp_path / 'vlp'
    res = subprocess.run([sys.executable, osp.join(CONVERT, 'hf_blip2_to_vlp.py'), str(src),
                          str(out)], cwd=str(tmp_path), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'post_layernorm -> ln_vision; tied LM head filled: True' in res.stdout
    # the Q-Former's text-only parameters are absent from HF's stage-2 model
    assert 'left at init: qformer.* (' in res.stdout
    text = (out / 'config.py').read_text()
    assert 'final_norm=False' in text and 'ln_vision=True' in text
    model = _load(str(out))
    assert model.llm.model.get_output_embeddings().weight \
        is model.llm.model.get_input_embeddings().weight
    assert isinstance(model.vision.model.norm, torch.nn.Identity)
    errs = _parity(hf_blip2, model)
    print('BLIP-2 (ln_vision): max abs differences', {k: f'{v:.1e}' for k, v in errs.items()})
    assert max(errs.values()) <= ATOL, errs


def test_state_dict_parity_vision_norm(tmp_path):
    """From the in-memory state dict with vision eps 1e-6 (the Salesforce checkpoints'):
    post_layernorm -> the ViT's final norm reproduces HF; ln_vision (eps 1e-5) is close."""
    hf = _hf_model(1e-6, 3)
    sd = hf.state_dict()
    res = blip2_tool.convert(sd, str(tmp_path / 'a'), config=hf.config.to_dict(),
                             post_layernorm='vision_norm')
    rep = res['report']
    assert rep.post_layernorm == 'vision_norm' and not rep.tied_lm_head
    assert {k.split('.')[1] for k in rep.left_at_init} == {
        'word_embeddings', 'position_embeddings', 'blocks'}
    assert all('.mlp.' in k or '.norm2.' in k for k in rep.left_at_init
               if '.blocks.' in k)
    model = _load(osp.dirname(res['checkpoint']))
    assert model.ln_vision is None
    errs = _parity(hf, model)
    print('BLIP-2 (vision_norm, eps 1e-6): max abs differences',
          {k: f'{v:.1e}' for k, v in errs.items()})
    assert max(errs.values()) <= ATOL, errs
    res = blip2_tool.convert(sd, str(tmp_path / 'b'), config=hf.config.to_dict())
    errs = _parity(hf, _load(osp.dirname(res['checkpoint'])))
    print('BLIP-2 (ln_vision, eps 1e-6 vs 1e-5): max abs differences',
          {k: f'{v:.1e}' for k, v in errs.items()})
    assert max(errs.values()) <= 1e-3, errs


def test_key_mapping_and_errors(hf_blip2):
    sd = dict(hf_blip2.state_dict())
    conv = blip2_tool.convert_hf_blip2_state_dict
    state, rep = conv(sd)
    assert state['qformer.blocks.0.attn.qkv.weight'].shape == (3 * Q_WIDTH, Q_WIDTH)
    assert state['qformer.blocks.0.cross_attn.kv.weight'].shape == (2 * Q_WIDTH, V_WIDTH)
    assert 'qformer.blocks.1.cross_attn.q.weight' not in state  # every 2nd layer
    assert 'qformer.blocks.2.cross_attn.q.weight' in state
    assert torch.equal(state['qformer.query_ffn.1.norm.weight'],
                       sd['qformer.encoder.layer.1.output_query.LayerNorm.weight'])
    assert torch.equal(state['ln_vision.weight'], sd['vision_model.post_layernorm.weight'])
    assert torch.equal(state['llm.model.model.decoder.embed_tokens.weight'],
                       sd['language_model.model.decoder.embed_tokens.weight'])
    # older files: q_bias / v_bias instead of qkv.bias
    old = dict(sd)
    bias = old.pop('vision_model.encoder.layers.0.self_attn.qkv.bias')
    old['vision_model.encoder.layers.0.self_attn.q_bias'] = bias[:V_WIDTH]
    old['vision_model.encoder.layers.0.self_attn.v_bias'] = bias[2 * V_WIDTH:]
    got = conv(old)[0]['vision.model.blocks.0.attn.qkv.bias']
    assert torch.equal(got[:V_WIDTH], bias[:V_WIDTH]) and not got[V_WIDTH:2 * V_WIDTH].any()
    cfg = hf_blip2.config.to_dict()
    for extra in ('foo.weight', 'qformer.encoder.layer.0.bogus.weight'):
        with pytest.raises(KeyError, match='unexpected'):
            blip2_tool.convert_hf_blip2(dict(sd, **{extra: torch.zeros(2)}), cfg)
    state2, rep = conv(dict(sd, **{'foo.weight': torch.zeros(2)}), drop=[r'foo\..*'])
    assert rep.dropped == ['foo.weight'] and state2.keys() == state.keys()
    partial = dict(sd)
    del partial['qformer.encoder.layer.0.attention.attention.key.weight']
    with pytest.raises(KeyError, match='only'):
        conv(partial)
    wrong = dict(sd, **{'language_projection.weight': torch.zeros(3, Q_WIDTH)})
    with pytest.raises(ValueError, match='shape mismatch'):
        blip2_tool.convert_hf_blip2(wrong, cfg)


def test_qformer_text_ffn_mapped():
    """``use_qformer_text_input``: the Q-Former's text FFNs map to the blocks' FFNs."""
    config = _hf_config()
    config.qformer_config.use_qformer_text_input = True
    with torch.device('meta'):
        hf = Blip2ForConditionalGeneration(config)
    sd = hf.state_dict()
    assert 'qformer.encoder.layer.0.intermediate.dense.weight' in sd
    state, _ = blip2_tool.convert_hf_blip2_state_dict(sd)
    assert {'qformer.blocks.0.mlp.fc1.weight', 'qformer.blocks.2.mlp.fc2.bias',
            'qformer.blocks.1.norm2.weight'} <= set(state)


def test_blip2_default_config():
    """HF's default ``Blip2Config`` (EVA ViT-g sizes, OPT-style LM; meta tensors): renamed
    keys and shapes fit the vlp model of the written config."""
    config = Blip2Config()
    with torch.device('meta'):
        hf = Blip2ForConditionalGeneration(config)
    state, _ = blip2_tool.convert_hf_blip2_state_dict(hf.state_dict())
    cfg = blip2_tool.hf_blip2_model_cfg(config)
    own = common.build_vlp_model(cfg, device='meta').state_dict()
    assert not set(state) - set(own)
    assert all(own[k].shape == v.shape for k, v in state.items())
    assert sorted({'.'.join(k.split('.')[:2]) for k in set(own) - set(state)}) == [
        'qformer.blocks', 'qformer.position_embeddings', 'qformer.word_embeddings']
    v, q = cfg['vision'], cfg['qformer']
    assert (v['patch_size'], v['embed_dim'], v['depth'], v['num_heads']) == (14, 1408, 39, 16)
    assert (q['num_query_tokens'], q['encoder_width'], q['cross_attention_freq']) == (
        32, 1408, 2)


def test_query_features_through_the_api(tmp_path, hf_blip2):
    """``vlp.apis.query_features`` on a converted BLIP-2 (uint8 images of another size)
    equals HF's Q-Former outputs (``get_image_features(...).qformer_outputs``) on the same
    preprocessed pixels; the written directory holds the evaluation configs."""
    import os

    from vlp import apis
    src = tmp_path / 'hf'
    hf_blip2.save_pretrained(str(src))
    out = tmp_path / 'vlp'
    blip2_tool.main([str(src), str(out), '--no-tokenizer'])
    assert {'eval_caption_coco.py', 'eval_vqa_zeroshot.py'} <= set(os.listdir(out))
    model = apis.init_model(str(out))
    assert 'query_features' in apis.supported_tasks(model)
    images = torch.randint(0, 256, (2, 3, 41, 29), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(3))
    got = apis.query_features(model, images)
    with torch.no_grad():
        want = hf_blip2.get_image_features(pixel_values=apis.preprocess(model, images),
                                           return_dict=True).qformer_outputs.last_hidden_state
    assert got.shape == (2, NQ, Q_WIDTH)
    assert _err(got, want) <= ATOL and want.abs().max() > 0.1
