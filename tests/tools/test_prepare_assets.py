"""tools/data/prepare_assets.py: the tokenizer files and weights a config names, from local
sources; checked by loading what it wrote."""
import os
import os.path as osp
import subprocess
import sys

import torch

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOL = osp.join(ROOT, 'tools', 'data', 'prepare_assets.py')


def _run(args, cwd, env_extra=None, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE='1', PYTHONPATH=ROOT, **(env_extra or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_clip_tokenizer_from_the_bundled_merges(tmp_path):
    """The paper configs read the bundled merges (nothing to write, the datasets listed); a
    config naming a tokenizer.json gets it written from them."""
    out = _run([TOOL, osp.join(ROOT, 'configs/clip/clip_vit-b16_base.py')], tmp_path)
    assert out.returncode == 1 and 'data/coco' in out.stdout  # the datasets: listed
    assert 'tokenizer' not in out.stdout
    (tmp_path / 'cfg.py').write_text(
        "model = dict(type='CLIP', tokenizer=dict(type='CLIPTokenizer', "
        "tokenizer_file='data/clip/tokenizer.json'))\n")
    out = _run([TOOL, str(tmp_path / 'cfg.py')], tmp_path)
    assert out.returncode == 0 and 'write data/clip/tokenizer.json' in out.stdout, out.stdout
    from vlp.datasets.tokenizers import CLIPTokenizer
    written = CLIPTokenizer(tokenizer_file=str(tmp_path / 'data/clip/tokenizer.json'))
    bundled = CLIPTokenizer(bpe_path='bundled')
    texts = ['a photo of a cat.', 'Über-cool naïve résumé &amp; 2024 :-)']
    assert torch.equal(written(texts)['input_ids'], bundled(texts)['input_ids'])
    assert written(['a photo of a cat.'])['input_ids'][0][:8].tolist() == [
        49406, 320, 1125, 539, 320, 2368, 269, 49407]


def test_bert_folder_for_blip(tmp_path):
    """BLIP's base config: bert-base-uncased from a local folder (linked); the ViT's hub
    weights, not given, are listed with the two ways to provide them."""
    bert = tmp_path / 'my_bert'
    bert.mkdir()
    (bert / 'vocab.txt').write_text('[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n')
    (bert / 'config.json').write_text('{}')
    work = tmp_path / 'work'
    work.mkdir()
    out = _run([TOOL, osp.join(ROOT, 'configs/blip/blip_base.py'), '--bert', str(bert)], work,
               dict(HF_HOME=str(tmp_path / 'hf')))
    assert out.returncode == 1 and 'link' in out.stdout, out.stdout + out.stderr
    assert osp.islink(work / 'data/bert-base-uncased')
    assert (work / 'data/bert-base-uncased/vocab.txt').read_text().startswith('[PAD]')
    missing = out.stdout.split('still missing')[-1]
    assert 'data/bert-base-uncased' not in missing
    assert '--timm vit_base_patch16_224.augreg_in21k_ft_in1k=FILE' in missing
    assert 'pretrained_cfg_overlay' in missing


def test_timm_weights_into_the_cache(tmp_path):
    """A local state dict of a timm model becomes the hub weights timm loads offline."""
    name = 'vit_tiny_patch16_224.augreg_in21k_ft_in1k'
    (tmp_path / 'cfg.py').write_text(
        f"model = dict(type='CLIP', vision=dict(type='TimmTower', model_name={name!r}, "
        "pretrained=True))\n")
    code = ('import timm, torch; from safetensors.torch import save_file; '
            f"m = timm.create_model({name!r}, pretrained=False); "
            "torch.manual_seed(0); [p.data.normal_() for p in m.parameters()]; "
            f"save_file(m.state_dict(), {str(tmp_path / 'vit.safetensors')!r})")
    assert _run(['-c', code], tmp_path).returncode == 0
    hf = dict(HF_HOME=str(tmp_path / 'hf'))
    out = _run([TOOL, str(tmp_path / 'cfg.py'), '--timm', f"{name}={tmp_path / 'vit.safetensors'}"],
               tmp_path, hf)
    assert out.returncode == 0 and 'install' in out.stdout, out.stdout + out.stderr
    check = ('import timm, torch; from safetensors.torch import load_file; '
             f"m = timm.create_model({name!r}, pretrained=True); "
             f"ref = load_file({str(tmp_path / 'vit.safetensors')!r}); "
             "print(torch.equal(m.state_dict()['blocks.0.attn.qkv.weight'], ref['blocks.0.attn.qkv.weight']))")
    res = _run(['-c', check], tmp_path, hf)
    assert res.stdout.strip().endswith('True'), res.stdout + res.stderr[-2000:]
    # and the preflight no longer reports a download
    out = _run([TOOL, str(tmp_path / 'cfg.py')], tmp_path, hf)
    assert out.returncode == 0 and 'every asset' in out.stdout
