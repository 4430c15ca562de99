"""VLMo's stage-wise pre-training in one run (StagewiseFreezeHook), through tools/train.py:
iterations 0-1 image (MIM), 2-3 text (MLM), 4-5 image-text. Each stage trains exactly its
documented parameters (vlp.models.algorithms.vlmo.STAGE_TRAINABLE), frozen parameters do
not move and hold no optimizer state, and training goes on across the switches: in one
process (plain optimizer), on 2 gloo ranks under DeepSpeed ZeRO-2 (a new engine per
stage), and after a resume in the middle of the text stage."""
import glob
import os.path as osp
import re

import pytest
import torch

import vlp_toy
from conftest import ROOT

CONFIG = str(ROOT / 'configs' / 'vlmo' / 'vlmo_tiny_demo.py')
STAGES = [dict(begin=0, stage='image'), dict(begin=2, stage='text'),
          dict(begin=4, stage='image_text')]


def _config(tmp_path, name, max_iters=6, **kw):
    return vlp_toy.prepare_config(
        CONFIG, str(tmp_path / f'{name}.py'), max_iters=max_iters, batch_size=8,
        options={'train_dataloader.num_workers': 0,
                 'train_dataloader.persistent_workers': False,
                 'test_after_train': False,
                 'custom_hooks': [dict(type='StagewiseFreezeHook', stages=STAGES),
                                  dict(type='LossRecorderHook'),
                                  dict(type='StageStateRecorderHook', iters=[0, 2, 4])]},
        **kw)


def _expected_trainable(names, stage):
    from vlp.models.algorithms.vlmo import ALWAYS_FROZEN, STAGE_TRAINABLE
    pats = [re.compile(p) for p in STAGE_TRAINABLE[stage]]
    return sorted(n for n in names if not re.match(ALWAYS_FROZEN, n)
                  and any(p.match(n) for p in pats))


def _state(work, it, rank=0):
    return torch.load(osp.join(work, f'stage_state_{it}_rank{rank}.pt'))


def _moved(a, b, pattern):
    keys = [k for k in a['model'] if re.search(pattern, k)]
    assert keys, pattern
    return [k for k in keys if not torch.equal(a['model'][k], b['model'][k])]


def _check_stages(work, rank=0, first=0):
    s = {it: _state(work, it, rank) for it in (0, 2, 4, 6) if it >= first}
    for it, stage in ((0, 'image'), (2, 'text'), (4, 'image_text')):
        if it not in s:
            continue
        assert s[it]['stage'] == stage
        assert s[it]['trainable'] == _expected_trainable(s[it]['params'], stage), stage
        assert s[it]['optimizer_matches'], stage
        assert s[it]['stateful_frozen'] == [], stage
    if 0 in s:  # image stage: attention and vision experts move, language side does not
        assert _moved(s[0], s[2], r'blocks\.\d+\.attn\.') and _moved(s[0], s[2], r'ffn\.v\.')
        assert not _moved(s[0], s[2], r'(ffn|norm2)\.(l|vl)\.|word_embeddings|text_norm')
    if 2 in s:  # text stage: language experts and text embeddings move, the rest is frozen
        assert _moved(s[2], s[4], r'ffn\.l\.') and _moved(s[2], s[4], r'word_embeddings')
        assert not _moved(s[2], s[4], r'attn\.|norm1|ffn\.v\.|norm2\.v\.|patch_embed|'
                                      r'gamma_|ffn\.vl\.|^backbone\.norm\.|mim_head|proj\.')
    # image-text stage: everything but the MIM head and [MASK]
    assert _moved(s[4], s[6], r'ffn\.vl\.') and _moved(s[4], s[6], r'attn\.')
    assert not _moved(s[4], s[6], r'mim_head|visual_tokenizer|mask_token')


def _check_losses(work, first=0):
    keys = {it: set(rec) for it, rec in _records(work).items()}
    for it in range(first, 6):
        expected = 'loss_mim' if it < 2 else 'loss_itc' if it >= 4 else 'loss_mlm'
        assert expected in keys[it], (it, keys[it])
    assert 'loss_itc' not in keys[3] and 'loss_mim' not in keys[5]
    for it, loss in vlp_toy.read_losses(work).items():
        assert torch.isfinite(torch.tensor(loss)), it


def _records(work):
    import json
    out = {}
    with open(osp.join(work, 'losses_rank0.jsonl')) as f:
        for line in f:
            rec = json.loads(line)
            out[rec['iter']] = rec
    return out


def test_stage_switches_plain_training(tmp_path):
    work = str(tmp_path / 'work')
    vlp_toy.cli_train(_config(tmp_path, 'plain'), work)
    _check_stages(work)
    _check_losses(work)


def test_resume_inside_the_text_stage(tmp_path):
    """Checkpoint at iteration 3 (text stage), resume: the optimizer is rebuilt for the
    text stage before its state is loaded, and the run finishes the three stages."""
    work = str(tmp_path / 'work')
    vlp_toy.cli_train(_config(tmp_path, 'first', max_iters=3, ckpt_interval=3), work)
    vlp_toy.cli_train(_config(tmp_path, 'resumed', ckpt_interval=3), work, '--resume')
    _check_stages(work, first=4)
    logs = sorted(glob.glob(osp.join(work, '*', '*.log')), key=osp.getmtime)
    log = open(logs[-1]).read()  # the resumed run's
    assert 'Resumed' in log or 'resumed' in log
    assert 'iteration 3: stage "text"' in log


@pytest.mark.timeout(900)
def test_stage_switches_zero2_two_ranks(tmp_path):
    work = str(tmp_path / 'work')
    vlp_toy.cli_train(_config(tmp_path, 'zero2', deepspeed_stage=2), work, nproc=2)
    for rank in (0, 1):
        _check_stages(work, rank)
    _check_losses(work)
    a, b = _state(work, 6, 0)['model'], _state(work, 6, 1)['model']
    for k in a:
        assert torch.equal(a[k], b[k]), k  # both ranks hold the same model


def test_base_config_names_a_missing_data_path(tmp_path, monkeypatch):
    """`tools/train.py configs/vlmo/vlmo_base.py` without the paper's data stops before
    training with an error naming the missing file."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    monkeypatch.chdir(tmp_path)  # no data/ here
    cfg = Config.fromfile(str(ROOT / 'configs' / 'vlmo' / 'vlmo_base.py'))
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)  # builds the (paper-sized) model
    with pytest.raises(FileNotFoundError, match='data/bert-base-uncased/vocab.txt'):
        runner.train()  # the data comes first: nothing trains
    for name in ('vlmo_base_stage2_text.py', 'vlmo_base_stage1_image.py'):
        cfg = Config.fromfile(str(ROOT / 'configs' / 'vlmo' / name))
        with pytest.raises(FileNotFoundError, match='data/'):
            from vlp.registry import DATASETS
            DATASETS.build(cfg.train_dataloader.dataset)


@pytest.mark.timeout(900)
def test_stage_switches_ddp_two_ranks(tmp_path):
    """Plain DDP (mmengine's Runner): the wrapper is rebuilt at each switch, its reducer
    knowing only the trainable parameters."""
    work = str(tmp_path / 'work')
    vlp_toy.cli_train(_config(tmp_path, 'ddp'), work, nproc=2)
    for rank in (0, 1):
        _check_stages(work, rank)
    a, b = _state(work, 6, 0)['model'], _state(work, 6, 1)['model']
    for k in a:
        assert torch.equal(a[k], b[k]), k
