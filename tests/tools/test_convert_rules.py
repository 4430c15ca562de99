"""vlp.convert: the rule engine (both directions, the strict check, alternatives picked by
the target model, fills and drops, the report) and the one checkpoint reader (plain,
mmengine, DeepSpeed ZeRO-0 directory, safetensors, HF folders sharded or not,
TorchScript) on tiny tensors."""
import json
import os.path as osp

import pytest
import torch

from vlp.convert import (TRANSPOSE, Add, Copy, Drop, Fuse, Rename, Split, Tied,
                         convert_state_dict, nest, read_checkpoint, reverse_table)
from vlp.convert.formats.bert import bert


def _t(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


TABLE = [
    Rename('enc.layers.{i}.ln.{p}', 'blocks.{i}.norm.{p}'),
    Fuse('enc.layers.{i}.{s}_proj.{p}', 'blocks.{i}.qkv.{p}', s=('q', 'k', 'v')),
    Rename('proj', 'head.weight', TRANSPOSE),
    Rename('enc.{e}.w', 'experts.{e}.w', maps=dict(e=dict(A='v', B='l'))),
    Drop('enc.position_ids', 'buffer'),
    Add('twin.{rest:.+}', Copy('blocks.{rest}'), 'momentum_copies'),
]


def _source():
    sd = {'enc.position_ids': torch.arange(4), 'proj': _t(3, 2), 'enc.A.w': _t(2),
          'enc.B.w': _t(3)}
    for i in range(2):
        sd[f'enc.layers.{i}.ln.weight'] = _t(4, seed=i)
        for s in 'qkv':
            sd[f'enc.layers.{i}.{s}_proj.weight'] = _t(4, 4, seed=10 * i + ord(s))
    return sd


def test_forward_backward_bit_identical():
    sd = _source()
    out, rep = convert_state_dict(sd, TABLE)
    assert out['blocks.1.qkv.weight'].shape == (12, 4)
    assert torch.equal(out['blocks.1.qkv.weight'][4:8], sd['enc.layers.1.k_proj.weight'])
    assert torch.equal(out['head.weight'], sd['proj'].t())
    assert set(out) >= {'experts.v.w', 'experts.l.w'}
    assert rep.ignored == ['enc.position_ids']
    back, rep = convert_state_dict(out, TABLE, reverse=True)
    assert set(back) == set(sd) - {'enc.position_ids'}
    assert all(torch.equal(back[k], sd[k]) for k in back)


def test_strict_errors_list_the_keys():
    sd = _source()
    with pytest.raises(KeyError, match=r"unexpected keys.*'enc\.extra'"):
        convert_state_dict(dict(sd, **{'enc.extra': _t(1)}), TABLE)
    out, rep = convert_state_dict(dict(sd, **{'enc.extra': _t(1)}), TABLE, drop=[r'enc\.ex.*'])
    assert rep.dropped == ['enc.extra']
    del sd['enc.layers.0.k_proj.weight']
    with pytest.raises(KeyError, match=r"blocks\.0\.qkv\.weight: only \['q', 'v'\]"):
        convert_state_dict(sd, TABLE)
    expected = {k: v for k, v in convert_state_dict(_source(), TABLE)[0].items()}
    with pytest.raises(KeyError, match=r"missing \['blocks\.0\.norm\.weight'\]"):
        convert_state_dict({k: v for k, v in _source().items()
                            if k != 'enc.layers.0.ln.weight'}, TABLE, expected=expected)
    bad = dict(expected, **{'head.weight': torch.zeros(5, 5)})
    with pytest.raises(ValueError, match='shape mismatch: head.weight'):
        convert_state_dict(_source(), TABLE, expected=bad)
    with pytest.raises(KeyError, match='does not have'):  # the target model lacks experts.v
        convert_state_dict(_source(), TABLE, expected={k: v for k, v in expected.items()
                                                       if k != 'experts.v.w'})


def test_adds_fill_only_expected_keys_and_reverse_to_drops():
    out, _ = convert_state_dict(_source(), TABLE)
    expected = dict(out, **{'twin.0.norm.weight': torch.empty(4)})
    full, rep = convert_state_dict(_source(), TABLE, expected=expected)
    assert torch.equal(full['twin.0.norm.weight'], full['blocks.0.norm.weight'])
    assert rep.momentum_copies == ['twin.0.norm.weight']
    back, rep = convert_state_dict(full, TABLE, reverse=True)
    assert rep.not_exported == ['twin.0.norm.weight']


def test_alternatives_are_picked_by_the_target_model():
    """open_clip's cross-attention: one fused in_proj_weight, or separate q/k/v weights
    when the key width differs; export writes the layout the target model has."""
    table = [Split('in_proj_weight', '{s}.weight', parts=(1, 2), s=('q', 'kv')),
             Rename('q_proj_weight', 'q.weight'),
             Fuse('{s}_proj_weight', 'kv.weight', s=('k', 'v'))]
    fused = {'in_proj_weight': _t(6, 2)}
    vlp, _ = convert_state_dict(fused, table)
    assert vlp['q.weight'].shape == (2, 2) and vlp['kv.weight'].shape == (4, 2)
    separate = {'q_proj_weight': _t(2, 2), 'k_proj_weight': _t(2, 3), 'v_proj_weight': _t(2, 3)}
    vlp2, _ = convert_state_dict(separate, table)
    for want in (fused, separate):
        meta = {k: torch.empty(v.shape, device='meta') for k, v in want.items()}
        back, _ = convert_state_dict(vlp if want is fused else vlp2, table, reverse=True,
                                     expected=meta)
        assert set(back) == set(want) and all(torch.equal(back[k], want[k]) for k in want)


def test_tied_and_fallback():
    table = [Rename('dec.bias', 'head.bias'), Rename('bias', 'head.bias', fallback=True),
             Rename('emb', 'emb'), Tied('dec.weight', 'emb')]
    emb = _t(3, 2)
    out, rep = convert_state_dict({'dec.bias': _t(3), 'bias': _t(3, seed=1), 'emb': emb,
                                   'dec.weight': emb.clone()}, table)
    assert sorted(rep.ignored) == ['bias', 'dec.weight']  # superseded source; tied copy
    out, _ = convert_state_dict({'bias': _t(3, seed=1), 'emb': emb}, table)
    assert torch.equal(out['head.bias'], _t(3, seed=1))
    with pytest.raises(ValueError, match='dec.weight differs from emb'):
        convert_state_dict({'bias': _t(3), 'emb': emb, 'dec.weight': emb + 1}, table)
    ref = {k: torch.empty(2, device='meta') for k in ('dec.bias', 'bias', 'emb', 'dec.weight')}
    with pytest.raises(ValueError, match='shape mismatch'):  # shapes checked on export too
        convert_state_dict(out, table, reverse=True, expected=ref)
    ref = dict(emb=emb, **{'dec.weight': emb, 'dec.bias': _t(3), 'bias': _t(3)})
    back, _ = convert_state_dict(out, table, reverse=True, expected=ref)  # the tied copy too
    assert list(back) == list(ref)
    assert torch.equal(back['dec.weight'], emb)


def test_one_bert_table_with_layer_maps():
    """ALBEF's split of one BERT into text (layers < 1) and fusion (layers >= 1)."""
    sd = {}
    for i in range(2):
        for s in ('query', 'key', 'value'):
            sd[f'bert.encoder.layer.{i}.attention.self.{s}.weight'] = _t(2, 2)
    table = bert('bert.', 'text.', layers={0: 0}) + \
        bert('bert.', 'fusion.', layers={1: 0}, embeddings=False)
    out, _ = convert_state_dict(sd, table)
    assert set(out) == {'text.blocks.0.attn.qkv.weight', 'fusion.blocks.0.attn.qkv.weight'}
    back, _ = convert_state_dict(out, table, reverse=True)
    assert set(back) == set(sd)
    assert len(reverse_table(nest(table, 'x.', 'y.'))) == len(table) - 1  # Drop dropped


# -- the one reader --------------------------------------------------------------------------------
def test_read_checkpoint_layouts(tmp_path):
    from safetensors.torch import save_file
    sd = {'a.weight': _t(2, 2), 'b': _t(3)}

    def same(got):
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)

    torch.save(sd, tmp_path / 'plain.pth')
    same(read_checkpoint(str(tmp_path / 'plain.pth')))
    torch.save({'state_dict': {'module.' + k: v for k, v in sd.items()}, 'meta': {'epoch': 1},
                'message_hub': {}}, tmp_path / 'mmengine.pth')
    same(read_checkpoint(str(tmp_path / 'mmengine.pth')))
    save_file(sd, str(tmp_path / 'w.safetensors'))
    same(read_checkpoint(str(tmp_path / 'w.safetensors')))
    ds = tmp_path / 'ds' / 'global_step1'
    ds.mkdir(parents=True)
    torch.save({'module': sd}, ds / 'mp_rank_00_model_states.pt')
    (tmp_path / 'ds' / 'latest').write_text('global_step1')
    same(read_checkpoint(str(tmp_path / 'ds')))
    hf = tmp_path / 'hf'
    hf.mkdir()
    save_file({'a.weight': sd['a.weight']}, str(hf / 'model-00001-of-00002.safetensors'))
    torch.save({'b': sd['b']}, hf / 'model-00002-of-00002.bin')
    (hf / 'model.safetensors.index.json').write_text(json.dumps(dict(weight_map={
        'a.weight': 'model-00001-of-00002.safetensors', 'b': 'model-00002-of-00002.bin'})))
    same(read_checkpoint(str(hf)))
    ts = torch.nn.Linear(2, 2)
    torch.jit.save(torch.jit.script(ts), str(tmp_path / 'ts.pt'))
    got = read_checkpoint(str(tmp_path / 'ts.pt'))
    assert torch.equal(got['weight'], ts.weight.detach())
    assert not osp.exists(tmp_path / 'missing')
    with pytest.raises(FileNotFoundError):
        read_checkpoint(str(tmp_path / 'missing'))
