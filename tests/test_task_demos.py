"""The downstream-task demo configs agree with the demo data they read: the token
vocabulary sizes they hard-code, the answer vocabulary and the dataset a task head
expects (the one-step training test of every demo is in test_configs.py)."""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from vlp.registry import TOKENIZERS

ROOT = Path(__file__).resolve().parents[1]
TASK_DEMOS = sorted(p for p in (ROOT / 'configs').rglob('*_tiny_demo.py')
                    if any(t in p.name for t in ('_vqa_', '_nlvr2_', '_snli_ve_', '_vit_init_')))


def test_task_demos_found():
    names = {p.name for p in TASK_DEMOS}
    assert {'vilt_vqa_tiny_demo.py', 'vlmo_vqa_tiny_demo.py', 'blip_vqa_tiny_demo.py',
            'albef_nlvr2_tiny_demo.py', 'vilt_vit_init_tiny_demo.py',
            'albef_snli_ve_tiny_demo.py'} <= names


@pytest.mark.parametrize('path', TASK_DEMOS, ids=lambda p: p.name)
def test_task_demo_vocabulary_matches_its_tokenizer(path):
    init_default_scope('vlp')
    cfg = Config.fromfile(str(path))
    pipeline = cfg.train_dataloader.dataset.pipeline
    tok_cfg = next(t['tokenizer'] for t in pipeline if t['type'] == 'Tokenize')
    assert tok_cfg['vocabulary'] == 'tasks'
    tokenizer = TOKENIZERS.build(tok_cfg)
    assert cfg.vocab_size == tokenizer.vocab_size  # the embedding tables' size
    if cfg.model.type == 'VQAClassifier':
        assert cfg.model.answer_list == dict(type='DemoVQA')
