"""Parity of tools/convert/{hf_clip,open_clip}_to_vlp.py on tiny random references.

Each test builds a reference CLIP (HF transformers ``CLIPModel`` / ``open_clip.CLIP``) with
random weights (LayerNorms and biases perturbed too, so a swapped or dropped tensor shows),
converts it through the command line entry point into a temporary directory, loads the
result with ``vlp.apis.init_model`` and compares L2-normalised image and text embeddings
(fp32, atol 1e-5) and ``logit_scale``. No downloads.
"""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import load_tool  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONVERT = osp.join(ROOT, 'tools', 'convert')


import vlp.convert as common  # noqa: E402  (check_state_dict, build_vlp_model)
hf_tool = load_tool('convert/hf_clip_to_vlp')
oc_tool = load_tool('convert/open_clip_to_vlp')

ATOL = 1e-5
CTX = 16  # text context length of the tiny references


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Add noise to every floating parameter (norm weights leave 1, biases leave 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _load(out_dir):
    from vlp.apis import init_model
    return init_model(osp.join(out_dir, 'config.py'), osp.join(out_dir, 'model.pth'),
                      device='cpu', strict=True)


def _images(seed=0):
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _mask_through(ids: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
    return (torch.arange(ids.shape[1])[None] <= eot_pos[:, None]).long()


def _assert_close(a, b):
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= ATOL, f'max abs difference {err:.3g} > {ATOL}'


# -- HF transformers ----------------------------------------------------------------------
def _hf_config(act='quick_gelu', eos=2, vocab=100):
    from transformers import CLIPConfig
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, hidden_act=act)
    return CLIPConfig(
        text_config=dict(tower, vocab_size=vocab, max_position_embeddings=CTX,
                         eos_token_id=eos, bos_token_id=1, pad_token_id=0),
        vision_config=dict(tower, image_size=32, patch_size=8), projection_dim=16)


def _hf_model(tmp_path, act, eos, seed=0):
    from transformers import CLIPModel
    torch.manual_seed(seed)
    model = CLIPModel(_hf_config(act, eos)).eval()
    _perturb(model, seed)
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
    src = str(tmp_path / 'hf')
    model.save_pretrained(src)
    return model, src


def _hf_feats(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@pytest.mark.parametrize('act,eos', [('quick_gelu', 2), ('gelu', 5)])
def test_hf_clip_parity(tmp_path, act, eos):
    ref, src = _hf_model(tmp_path, act, eos)
    out = str(tmp_path / 'vlp')
    hf_tool.main([src, out])
    model = _load(out)
    assert model.text.eot_token_id == (None if eos == 2 else eos)

    images = _images()
    with torch.no_grad():
        want = F.normalize(_hf_feats(ref.get_image_features(pixel_values=images)), dim=-1)
    _assert_close(model.encode_image(images), want)

    if eos == 2:
        # legacy config: HF pools at argmax, i.e. at 99, not at the token 2 before it
        ids = torch.tensor([[1, 2, 50, 99, 0, 0, 0, 0], [1, 7, 99, 0, 0, 0, 0, 0],
                            [1, 30, 40, 50, 60, 70, 80, 99]])
        eot = ids.argmax(-1)
    else:
        # pools at the first eos (5) even where a larger id precedes it or pads repeat it
        ids = torch.tensor([[1, 50, 99, 5, 0, 0, 0, 0], [1, 7, 5, 5, 5, 5, 5, 5],
                            [1, 30, 40, 50, 60, 70, 80, 5]])
        eot = (ids == 5).int().argmax(-1)
    mask = _mask_through(ids, eot)
    with torch.no_grad():
        want = F.normalize(_hf_feats(ref.get_text_features(input_ids=ids,
                                                           attention_mask=mask)), dim=-1)
    _assert_close(model.encode_text(ids, attention_mask=mask), want)
    _assert_close(model.encode_text(ids), want)  # padding after EOT: causality hides it
    assert model.itc.logit_scale.item() == ref.logit_scale.item() == 2.5


def _tiny_bpe_files(d):
    """A byte-level BPE vocabulary of 56 tokens (letters, letters + ``</w>``, one merge,
    SOT, EOT) in HF's ``vocab.json`` + ``merges.txt`` form."""
    letters = [chr(c) for c in range(ord('a'), ord('z') + 1)]
    tokens = letters + [c + '</w>' for c in letters] + ['ca', 'cat</w>'] + [
        '<|startoftext|>', '<|endoftext|>']
    d.mkdir(exist_ok=True)
    with open(d / 'vocab.json', 'w') as f:
        json.dump({t: i for i, t in enumerate(tokens)}, f)
    with open(d / 'merges.txt', 'w') as f:
        f.write('#version: 0.2\nc a\nca t</w>\n')
    return {t: i for i, t in enumerate(tokens)}


def test_hf_clip_tokenizer_files(tmp_path):
    """vocab.json + merges.txt are copied and named (relative to config.py) in the config;
    strings go through vlp's CLIPTokenizer and match HF on the same ids."""
    eot = 55  # '<|endoftext|>' of the tiny vocabulary
    ref, src = _hf_model(tmp_path, 'quick_gelu', eot)
    vocab = _tiny_bpe_files(tmp_path / 'hf')
    assert vocab['<|endoftext|>'] == eot
    out = tmp_path / 'vlp'
    hf_tool.main([src, str(out)])
    assert (out / 'vocab.json').exists() and (out / 'merges.txt').exists()
    text = (out / 'config.py').read_text()
    assert "vocab_file='{{ fileDirname }}/vocab.json'" in text
    model = _load(str(out))
    tok = model.tokenizer(['a cat', 'b'])
    assert tok['input_ids'][0, :4].tolist() == [vocab['<|startoftext|>'], vocab['a</w>'],
                                                vocab['cat</w>'], eot]
    with torch.no_grad():
        want = F.normalize(_hf_feats(ref.get_text_features(**tok)), dim=-1)
    _assert_close(model.encode_text(['a cat', 'b']), want)


# -- open_clip ---------------------------------------------------------------------------
def _oc_cfg(quick_gelu, vocab=100):
    return dict(embed_dim=16, quick_gelu=quick_gelu,
                vision_cfg=dict(image_size=32, patch_size=8, width=32, layers=2, head_width=16,
                                mlp_ratio=2.0),
                text_cfg=dict(context_length=CTX, vocab_size=vocab, width=32, heads=2,
                              layers=2, mlp_ratio=2.0))


def _oc_model(tmp_path, quick_gelu, seed=0, fmt='ddp', vocab=100):
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    cfg = _oc_cfg(quick_gelu, vocab)
    torch.manual_seed(seed)
    model = open_clip.CLIP(cfg['embed_dim'], vision_cfg=CLIPVisionCfg(**cfg['vision_cfg']),
                           text_cfg=CLIPTextCfg(**cfg['text_cfg']),
                           quick_gelu=quick_gelu).eval()
    _perturb(model, seed)
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    ckpt = str(tmp_path / 'open_clip.pt')
    if fmt == 'torchscript':  # as OpenAI's release files (they hold fp16 weights)
        torch.jit.save(torch.jit.script(model), ckpt)
    else:  # an open_clip training checkpoint: 'state_dict' with DDP's 'module.' prefix
        torch.save({'epoch': 1, 'state_dict': {'module.' + k: v
                                               for k, v in model.state_dict().items()}}, ckpt)
    cfg_file = str(tmp_path / 'model_cfg.json')
    with open(cfg_file, 'w') as f:
        json.dump(cfg, f)
    return model, cfg_file, ckpt


def _oc_ids():
    """EOT = 99 (the largest id, open_clip's argmax pooling), zero padding after it."""
    ids = torch.zeros(3, CTX, dtype=torch.long)
    ids[0, :5] = torch.tensor([98, 20, 30, 40, 99])
    ids[1, :3] = torch.tensor([98, 7, 99])
    ids[2, :] = torch.tensor([98] + list(range(10, 10 + CTX - 2)) + [99])
    return ids


@pytest.mark.filterwarnings('ignore::FutureWarning')  # torch.jit deprecation
@pytest.mark.parametrize('quick_gelu,fmt', [(True, 'torchscript'), (False, 'ddp')])
def test_open_clip_parity(tmp_path, quick_gelu, fmt):
    ref, cfg_file, ckpt = _oc_model(tmp_path, quick_gelu, fmt=fmt)
    out = str(tmp_path / 'vlp')
    oc_tool.main(['--model-config', cfg_file, '--checkpoint', ckpt, '--no-tokenizer', out])
    model = _load(out)
    assert model.tokenizer is None
    assert model.vision.model.blocks[0].mlp.act.__class__.__name__ == (
        'QuickGELU' if quick_gelu else 'GELU')
    assert model.text.blocks[0].mlp.act.__class__.__name__ == (
        'QuickGELU' if quick_gelu else 'GELU')

    images = _images()
    with torch.no_grad():
        want = ref.encode_image(images, normalize=True)
    _assert_close(model.encode_image(images), want)

    ids = _oc_ids()
    with torch.no_grad():
        want = ref.encode_text(ids, normalize=True)
    _assert_close(model.encode_text(ids), want)
    _assert_close(model.encode_text(ids, attention_mask=_mask_through(ids, ids.argmax(-1))),
                  want)
    assert model.itc.logit_scale.item() == ref.logit_scale.item() == 3.0


def test_open_clip_cli_script(tmp_path):
    """The script runs as a script; by default it copies open_clip's bundled BPE
    vocabulary and names it in the config; model.pth loads with weights_only=True. A model
    whose vocabulary is smaller than the tokenizer's is refused (its ids would not index
    the embedding), and converts with --no-tokenizer."""
    (tmp_path / 'small').mkdir()
    _, cfg_file, ckpt = _oc_model(tmp_path / 'small', quick_gelu=True)
    cmd = [sys.executable, osp.join(CONVERT, 'open_clip_to_vlp.py'), '--model-config',
           cfg_file, '--checkpoint', ckpt]
    bad = subprocess.run(cmd + [str(tmp_path / 'bad')], cwd=str(tmp_path),
                         capture_output=True, text=True)
    assert bad.returncode != 0 and '49,408 tokens' in bad.stderr, bad.stderr[-2000:]
    assert 'vocabulary of 100' in bad.stderr and '--no-tokenizer' in bad.stderr
    subprocess.run(cmd + ['--no-tokenizer', str(tmp_path / 'ids')], check=True,
                   cwd=str(tmp_path), capture_output=True)
    assert 'tokenizer' not in (tmp_path / 'ids' / 'config.py').read_text().split('model =')[1]
    _, cfg_file, ckpt = _oc_model(tmp_path, quick_gelu=True, vocab=49408)
    out = tmp_path / 'vlp'
    subprocess.run([sys.executable, osp.join(CONVERT, 'open_clip_to_vlp.py'),
                    '--model-config', cfg_file, '--checkpoint', ckpt, str(out)],
                   check=True, cwd=str(tmp_path), capture_output=True)
    assert (out / 'bpe_simple_vocab_16e6.txt.gz').exists()
    text = (out / 'config.py').read_text()
    assert "bpe_path='{{ fileDirname }}/bpe_simple_vocab_16e6.txt.gz'" in text
    assert "default_scope = 'vlp'" in text
    ckpt_out = torch.load(str(out / 'model.pth'), map_location='cpu', weights_only=True)
    assert set(ckpt_out) == {'state_dict', 'meta'}
    assert all(isinstance(v, (str, int)) for v in ckpt_out['meta'].values())
    assert ckpt_out['meta']['source'] == 'open_clip.CLIP'
    assert all(v.dtype == torch.float32 for v in ckpt_out['state_dict'].values())


# -- configs of real models (no weights) ----------------------------------------------------
def test_open_clip_named_configs():
    import open_clip
    cfg = oc_tool.open_clip_config_to_vlp(open_clip.get_model_config('ViT-B-16'))
    assert cfg['vision']['model_name'] == 'vit_base_patch16_clip_224'
    assert (cfg['vision']['embed_dim'], cfg['vision']['depth'], cfg['vision']['num_heads'],
            cfg['vision']['patch_size'], cfg['vision']['img_size']) == (768, 12, 12, 16, 224)
    assert cfg['vision']['act_layer'] == cfg['text']['act_layer'] == 'gelu'
    assert (cfg['text']['width'], cfg['text']['heads'], cfg['text']['vocab_size'],
            cfg['text']['context_length'], cfg['text']['eot_token_id']) == (
                512, 8, 49408, 77, None)
    assert cfg['vision_proj'] == dict(type='Projection', in_dim=768, out_dim=512, bias=False)
    cfg = oc_tool.open_clip_config_to_vlp(open_clip.get_model_config('ViT-L-14-quickgelu'))
    assert cfg['vision']['model_name'] == 'vit_large_patch14_clip_quickgelu_224'
    assert cfg['vision']['num_heads'] == 16 and cfg['text']['act_layer'] == 'quick_gelu'
    # multilingual tokenizer pooled at its eos id
    cfg = oc_tool.open_clip_config_to_vlp(open_clip.get_model_config('ViT-H-14-worldwide'))
    assert cfg['text']['eot_token_id'] == 2


@pytest.mark.parametrize('name', ['ViT-M-16-alt', 'RN50', 'ViT-L-14-CLIPA',
                                  'ViT-B-16-SigLIP', 'coca_ViT-B-32'])
def test_open_clip_unsupported_configs_raise(name):
    """Architectures vlp's CLIP cannot reproduce exactly (layer scale, ResNet, average
    pooling without ln_pre, timm/HF towers, CoCa) are refused, not approximated."""
    import open_clip
    with pytest.raises(NotImplementedError):
        oc_tool.open_clip_config_to_vlp(open_clip.get_model_config(name))


def test_hf_unsupported_activation_raises():
    with pytest.raises(NotImplementedError, match='relu'):
        hf_tool.hf_clip_config_to_vlp(_hf_config(act='relu'))


# -- a wrong mapping fails ----------------------------------------------------------------
def test_missing_and_unexpected_keys_raise(tmp_path):
    from transformers import CLIPModel
    config = _hf_config()
    sd = CLIPModel(config).state_dict()
    model_cfg = hf_tool.hf_clip_config_to_vlp(config)
    converted = hf_tool.convert_hf_clip_state_dict(sd)
    common.check_state_dict(model_cfg, converted)  # complete: passes

    dropped = {k: v for k, v in sd.items() if k != 'text_projection.weight'}
    with pytest.raises(KeyError, match='text_proj.proj.weight'):
        common.check_state_dict(model_cfg, hf_tool.convert_hf_clip_state_dict(dropped))
    with pytest.raises(KeyError, match='unexpected key'):
        hf_tool.convert_hf_clip_state_dict(dict(sd, **{'text_model.pooler.weight': sd[
            'text_projection.weight']}))
    no_k = {k: v for k, v in sd.items()
            if k != 'vision_model.encoder.layers.1.self_attn.k_proj.weight'}
    with pytest.raises(KeyError, match=r"\['q', 'v'\]"):
        hf_tool.convert_hf_clip_state_dict(no_k)
    bad_shape = dict(converted, **{'text.positional_embedding': torch.zeros(CTX + 1, 32)})
    with pytest.raises(ValueError, match='text.positional_embedding'):
        common.check_state_dict(model_cfg, bad_shape)

    # open_clip through the command line: a missing tensor and SigLIP's logit_bias
    ref, cfg_file, ckpt = _oc_model(tmp_path, quick_gelu=False)
    sd = ref.state_dict()
    for name, edit in (('missing', lambda d: d.pop('ln_final.weight')),
                       ('extra', lambda d: d.update(logit_bias=torch.zeros(())))):
        broken = dict(sd)
        edit(broken)
        path = str(tmp_path / f'{name}.pt')
        torch.save(broken, path)
        with pytest.raises(KeyError):
            oc_tool.main(['--model-config', cfg_file, '--checkpoint', path, '--no-tokenizer',
                          str(tmp_path / name)])
        assert not osp.exists(tmp_path / name / 'model.pth')


def test_parity_detects_a_wrong_mapping(tmp_path):
    """The comparison has teeth: swapping q and k rows of one block (a plausible fusion
    bug) or the two norms of one block breaks parity far beyond the tolerance."""
    ref, cfg_file, ckpt = _oc_model(tmp_path, quick_gelu=True)
    out = str(tmp_path / 'vlp')
    oc_tool.main(['--model-config', cfg_file, '--checkpoint', ckpt, '--no-tokenizer', out])
    model = _load(out)
    images, ids = _images(), _oc_ids()
    with torch.no_grad():
        want_img = ref.encode_image(images, normalize=True)
        want_txt = ref.encode_text(ids, normalize=True)
        blk = model.text.blocks[1].attn.qkv.weight
        q, k, v = blk.clone().chunk(3, dim=0)
        blk.copy_(torch.cat([k, q, v], dim=0))
        vb = model.vision.model.blocks[0]
        w1, w2 = vb.norm1.weight.clone(), vb.norm2.weight.clone()
        vb.norm1.weight.copy_(w2)
        vb.norm2.weight.copy_(w1)
    assert (model.encode_text(ids) - want_txt).abs().max() > 1e3 * ATOL
    assert (model.encode_image(images) - want_img).abs().max() > 1e3 * ATOL


def test_converted_directory_is_complete_and_its_eval_configs_fit(tmp_path):
    """What a converter writes runs as it is: ``config.py`` with the model, its tokenizer
    (open_clip's bundled BPE, the weights' 49,408 tokens) and the test transforms, so
    ``vlp.apis`` takes raw images and strings; one ``eval_*.py`` per benchmark (zero-shot
    ImageNet, COCO / Flickr30k retrieval) that tools/test.py accepts with ``model.pth``
    under its strict key check, with the converted model's test pipeline."""
    from mmengine.config import Config

    from vlp import apis
    test_tool = load_tool('test')
    ref, cfg_file, ckpt = _oc_model(tmp_path, quick_gelu=True, vocab=49408)
    out = str(tmp_path / 'vlp')
    res = oc_tool.main(['--model-config', cfg_file, '--checkpoint', ckpt, out])
    names = sorted(osp.basename(p) for p in res['eval_configs'])
    assert names == ['eval_retrieval_coco.py', 'eval_retrieval_flickr30k.py',
                     'eval_zeroshot_imagefolder.py'], names
    model = apis.init_model(out)
    assert model.preprocess.size == (32, 32)
    # raw strings and uint8 images of another size, as open_clip's own transforms would
    import open_clip
    tok = open_clip.get_tokenizer('ViT-B-32', context_length=CTX)
    images = torch.randint(0, 256, (2, 3, 48, 40), dtype=torch.uint8)
    with torch.no_grad():
        want_txt = ref.encode_text(tok(['a photo of a cat', 'a dog']), normalize=True)
        want_img = ref.encode_image(apis.preprocess(model, images), normalize=True)
    _assert_close(apis.encode_text(model, ['a photo of a cat', 'a dog']), want_txt)
    _assert_close(apis.encode_image(model, images), want_img)
    resize = [t for t in model.cfg.test_pipeline if t['type'] in ('Resize', 'CenterCrop')]
    assert resize, model.cfg.test_pipeline
    for path in res['eval_configs']:
        cfg = Config.fromfile(path)
        for key in ('model', 'test_dataloader', 'test_evaluator', 'test_cfg'):
            assert cfg.get(key) is not None, (path, key)
        pipeline = cfg.test_dataloader.dataset.pipeline
        assert [t for t in pipeline if t['type'] in ('Resize', 'CenterCrop')] == resize, path
        test_tool.check_checkpoint(cfg, osp.join(out, 'model.pth'))  # strict: raises if not
    # and a checkpoint of another model is refused by the same check
    bad = {k: v for k, v in torch.load(osp.join(out, 'model.pth'),
                                       weights_only=True)['state_dict'].items()
           if not k.startswith('text.')}
    torch.save(bad, tmp_path / 'bad.pth')
    with pytest.raises(apis.CheckpointMismatchError, match='missing: text.'):
        test_tool.check_checkpoint(Config.fromfile(res['eval_configs'][0]),
                                   str(tmp_path / 'bad.pth'))
