"""Shared fixtures of the command-line tool tests.

The engine tests run a tiny toy experiment (tests/engine/vlp_toy.py). To run the
multi-process tests on another config, e.g. the CLIP demo, set
``VLP_ENGINE_TEST_CONFIGS=configs/clip/clip_tiny_demo.py`` (comma-separated paths,
``toy`` for the toy). Such a config must have an even train batch size and, for the
multi-rank loss comparisons, a loss computed over the global batch (features gathered
with gradient, as CLIP's contrastive loss does) and deterministic data (see
DETERMINISTIC_DATA).
"""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'engine'))

import vlp_toy  # noqa: E402


def load_tool(name: str):
    """Import ``tools/<name>.py`` (e.g. ``'train'``, ``'convert/hf_blip_to_vlp'``) as a
    module: the tools are scripts, not a package."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'vlp_tools_' + name.replace('/', '_'), str(ROOT / 'tools' / f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

ENGINE_TEST_CONFIGS = os.environ.get('VLP_ENGINE_TEST_CONFIGS', 'toy').split(',')

# Options making a config's data deterministic, so that 1 and 2 ranks see the same global
# batches (a caption drawn at random per sample differs between the runs' RNG streams).
DETERMINISTIC_DATA = {
    'configs/clip/clip_tiny_demo.py': {'train_dataloader.dataset.train_sampling': 'pairs'},
}

# randomness the toy adds for the resume tests: dropout, augmentation in the main
# process, a DataLoader restart inside the run
TOY_RANDOM = {'model.drop': 0.1, 'train_dataloader.dataset.augment': True,
              'train_dataloader.dataset.num': 32}


@pytest.fixture(scope='module', params=ENGINE_TEST_CONFIGS)
def base_config(request, tmp_path_factory):
    """(path, options adding randomness, options removing data randomness) of the config
    under test."""
    if request.param == 'toy':
        path = vlp_toy.write_toy_config(str(tmp_path_factory.mktemp('base') / 'toy.py'))
        return path, dict(TOY_RANDOM), {}
    return str(ROOT / request.param), {}, dict(DETERMINISTIC_DATA.get(request.param, {}))


def tiny_vocab(path, size: int) -> dict:
    """A BERT vocabulary file of ``size`` tokens (the five specials, a few words, then
    ``w<i>``) written to ``path``; returns ``{token: id}``. The converter tests give it
    to a converter so that its output loads with a tokenizer."""
    words = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'cat', 'dog', 'on', 'the']
    words += [f'w{i}' for i in range(size - len(words))]
    path.write_text('\n'.join(words) + '\n')
    return {w: i for i, w in enumerate(words)}


API_TEXTS = ['a cat on the dog', 'the cat', 'a dog']


def api_inputs(model, size: int, hw, seed: int):
    """Two raw uint8 images of another size (``hw``) and :data:`API_TEXTS`, and what a
    converted model's ``vlp.apis`` makes of them: ``(images, texts, pixels [2, 3, size,
    size], ids, mask)``; checks the model's own preprocessing size."""
    import torch
    from vlp import apis
    assert model.preprocess.size == (size, size)
    images = torch.randint(0, 256, (2, 3, *hw), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed))
    pixels = apis.preprocess(model, images)
    assert pixels.shape == (2, 3, size, size)
    tok = model.tokenizer(API_TEXTS)
    return images, API_TEXTS, pixels, tok['input_ids'], tok['attention_mask']
