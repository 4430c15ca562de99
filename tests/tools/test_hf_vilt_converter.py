"""Parity of tools/convert/hf_vilt_to_vlp.py with HF transformers' ViLT on tiny random
models (built in-process, perturbed so that no weight sits at its init; no downloads):
``ViltModel`` (text and image hidden states, pooled output), ``ViltForMaskedLM`` (MLM
logits; through the command line from a ``save_pretrained`` directory, which omits the tied
decoder) and ``ViltForImageAndTextRetrieval`` (the retrieval score equals vlp's
``rerank_scores``). HF samples the order of the patches at random even with
``max_image_length=-1`` (a permutation of all of them): the image states are compared after
undoing it with HF's own ``patch_index``, taken under the same seed. fp32, within 1e-5.
"""
import os.path as osp
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip('transformers')
from transformers import (ViltConfig, ViltForImageAndTextRetrieval,  # noqa: E402
                          ViltForMaskedLM, ViltModel)
from conftest import api_inputs, load_tool, tiny_vocab  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
tool = load_tool('convert/hf_vilt_to_vlp')

ATOL = 1e-5
IMG, PATCH, WIDTH, VOCAB, TXT = 32, 8, 32, 50, 12


def _config() -> ViltConfig:
    return ViltConfig(vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=48, image_size=IMG,
                      patch_size=PATCH, max_position_embeddings=TXT, max_image_length=-1,
                      pad_token_id=0)


def _perturb(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _inputs():
    g = torch.Generator().manual_seed(4)
    images = torch.randn(3, 3, IMG, IMG, generator=g)
    ids = torch.randint(5, VOCAB, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    ids[:, 0] = 2
    for i, n in enumerate([9, 6, 4]):
        ids[i, n - 1] = 3
        mask[i, n:] = 0
        ids[i, n:] = 0
    return images, ids, mask


def _vlp(out):
    from vlp.apis import init_model
    return init_model(out['config'], out['checkpoint'], device='cpu').eval()


def _hf_run(hf_vilt, fn, images):
    """Run ``fn`` under a fixed seed; return its output and HF's patch order (``[B, N]``
    row-major grid index of each image token after the ``[class]`` token)."""
    torch.manual_seed(0)
    _, _, (patch_index, _) = hf_vilt.embeddings.visual_embed(
        images, torch.ones(images.shape[0], IMG, IMG), max_image_length=-1)
    torch.manual_seed(0)
    out = fn()
    grid = IMG // PATCH
    return out, patch_index[..., 0] * grid + patch_index[..., 1]


def test_vilt_model_hidden_states_and_pooled(tmp_path):
    torch.manual_seed(0)
    hf = _perturb(ViltModel(_config()), 1)
    out = tool.convert(hf.state_dict(), str(tmp_path), config=hf.config)
    assert out['model']['itm_head'] is None and out['model']['mlm_head'] is None
    model = _vlp(out)
    images, ids, mask = _inputs()
    with torch.no_grad():
        ref, order = _hf_run(hf, lambda: hf(input_ids=ids, attention_mask=mask,
                                            pixel_values=images), images)
        got = model.fuse(images, ids, mask)
    L = ids.shape[1]
    text_ref, img_ref = ref.last_hidden_state[:, :L], ref.last_hidden_state[:, L:]
    torch.testing.assert_close(got['text_embeds'], text_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(got['pooled'], ref.pooler_output, atol=ATOL, rtol=0)
    torch.testing.assert_close(got['image_embeds'][:, 0], img_ref[:, 0], atol=ATOL, rtol=0)
    patches = got['image_embeds'][:, 1:]
    reordered = patches.gather(1, order[..., None].expand(-1, -1, WIDTH))
    torch.testing.assert_close(reordered, img_ref[:, 1:], atol=ATOL, rtol=0)


def test_vilt_mlm_logits_through_the_command_line(tmp_path):
    torch.manual_seed(2)
    hf = _perturb(ViltForMaskedLM(_config()), 3)
    src = tmp_path / 'hf'
    hf.save_pretrained(str(src))
    dst = tmp_path / 'vlp'
    res = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'convert',
                                                   'hf_vilt_to_vlp.py'), str(src), str(dst)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    out = dict(config=str(dst / 'config.py'), checkpoint=str(dst / 'model.pth'))
    model = _vlp(out)
    assert model.mlm_head.decoder.weight is model.backbone.word_embeddings.weight
    images, ids, mask = _inputs()
    with torch.no_grad():
        ref, _ = _hf_run(hf.vilt, lambda: hf(input_ids=ids, attention_mask=mask,
                                             pixel_values=images), images)
        got = model.mlm_head(model.fuse(images, ids, mask)['text_embeds'])
    torch.testing.assert_close(got, ref.logits, atol=ATOL, rtol=0)


def test_vilt_retrieval_score_from_a_weights_file(tmp_path):
    torch.manual_seed(5)
    hf = _perturb(ViltForImageAndTextRetrieval(_config()), 6)
    path = tmp_path / 'weights.pth'
    torch.save(hf.state_dict(), str(path))
    cfg_json = tmp_path / 'config.json'
    hf.config.to_json_file(str(cfg_json))
    out = tool.convert(str(path), str(tmp_path / 'vlp'), config=str(cfg_json))
    assert out['kind'] == 'ViltForImageAndTextRetrieval'
    model = _vlp(out)
    images, ids, mask = _inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, pixel_values=images).logits[:, 0]
        got = model.rerank_scores(images, ids, mask)
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)


def test_unknown_keys_are_refused():
    torch.manual_seed(0)
    sd = dict(ViltModel(_config()).state_dict())
    sd['vilt.extra.weight'] = torch.zeros(1)
    with pytest.raises(KeyError, match='extra'):
        tool.convert_hf_vilt_state_dict(sd)
    state, info = tool.convert_hf_vilt_state_dict(sd, drop=[r'vilt\.extra\..*'])
    assert info['dropped'] == ['vilt.extra.weight']


def _tiny_vocab(path):
    return tiny_vocab(path, VOCAB)


def test_public_api_match_equals_hf_retrieval(tmp_path):
    """Issue 19: a converted ``ViltForImageAndTextRetrieval`` (with the vocabulary) through
    ``vlp.apis`` only: uint8 images of another size (resized by the converted config's test
    pipeline) and raw strings; ``match``'s ITM probability of every pair is the sigmoid of
    HF's retrieval score (``rank_output``: the log-odds of a match) on the same preprocessed
    pixels and token ids."""
    from vlp import apis
    torch.manual_seed(5)
    hf = _perturb(ViltForImageAndTextRetrieval(_config()), 6)
    with torch.no_grad():  # scores of several units: probabilities away from 1/2
        hf.rank_output.weight.mul_(50)
    vocab = _tiny_vocab(tmp_path / 'vocab.txt')
    out = tool.convert(hf.state_dict(), str(tmp_path / 'vlp'), config=hf.config,
                       tokenizer=str(tmp_path / 'vocab.txt'))
    model = apis.init_model(str(tmp_path / 'vlp'))
    assert 'match' in apis.supported_tasks(model)
    images, texts, pixels, ids, mask = api_inputs(model, IMG, (48, 40), 7)
    assert ids.shape == (3, TXT) and ids[0, :7].tolist() == [vocab[w] for w in (
        '[CLS]', 'a', 'cat', 'on', 'the', 'dog', '[SEP]')]
    with torch.no_grad():
        want = torch.stack([hf(input_ids=ids, attention_mask=mask,
                               pixel_values=pixels[i:i + 1].expand(3, -1, -1, -1)).logits[:, 0]
                            for i in range(2)]).sigmoid()
    res = apis.match(model, images, texts)
    assert set(res) == {'itm'}
    torch.testing.assert_close(res['itm'], want, atol=ATOL, rtol=0)
    # the pairs differ: a wrong pairing or a constant head would not pass
    assert want.max() - want.min() > 5e-3  # 500 x the tolerance
    assert out['kind'] == 'ViltForImageAndTextRetrieval'
