"""BLIP-2 stage 2 under DeepSpeed ZeRO-3 on 2 gloo ranks (``tools/dist_train.sh``): the
stage-2 demo model with the paper's frozen LLM (and frozen image encoder) trains two steps;
the frozen parts stay bit-identical on both ranks, the Q-Former and the projection move,
and both ranks end with the same weights."""
import os.path as osp

import torch

import vlp_toy
from conftest import ROOT

CONFIG = str(ROOT / 'configs' / 'blip2' / 'blip2_stage2_tiny_demo.py')


def test_blip2_stage2_zero3_two_ranks_keeps_frozen_parts(tmp_path):
    cfg = vlp_toy.prepare_config(
        CONFIG, str(tmp_path / 'blip2_s2.py'), max_iters=2, ckpt_interval=2, batch_size=4,
        deepspeed_stage=3,
        options={'model.freeze_llm': True, 'model.stage1.checkpoint': None,
                 'train_dataloader.num_workers': 0,
                 'train_dataloader.persistent_workers': False,
                 'test_after_train': False,
                 'custom_hooks': [dict(type='LossRecorderHook'),
                                  dict(type='ModelStateRecorderHook', before=True)]})
    work = str(tmp_path / 'work')
    vlp_toy.cli_train(cfg, work, nproc=2)
    losses = vlp_toy.read_losses(work)
    assert sorted(losses) == [0, 1] and all(torch.isfinite(torch.tensor(list(losses.values()))))
    states = [(torch.load(osp.join(work, f'model_state_before_rank{r}.pt')),
               torch.load(osp.join(work, f'model_state_rank{r}.pt'))) for r in range(2)]
    for before, after in states:
        frozen = [k for k in after if k.startswith(('llm.', 'vision.'))]
        assert frozen
        for k in frozen:
            assert torch.equal(before[k], after[k]), k  # frozen: bit-identical
        moved = [k for k in after if k.startswith(('qformer.query_tokens', 'projection.'))]
        assert moved and any(not torch.equal(before[k], after[k]) for k in moved)
    # both ranks hold the same model
    for k, v in states[0][1].items():
        assert torch.equal(v, states[1][1][k]), k
