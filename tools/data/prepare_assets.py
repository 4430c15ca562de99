"""Write the tokenizer files and weights a config names, from local sources.

Paper configs name files by their conventional places (``data/bert-base-uncased/vocab.txt``,
``data/clip/tokenizer.json``, ``data/opt-2.7b``, timm's hub weights of the ViT). This tool
reads a config, finds which of those are missing (the preflight of ``tools/train.py``) and
makes each one from what you have locally:

    python tools/data/prepare_assets.py configs/clip/clip_vit-b16_base.py
    python tools/data/prepare_assets.py configs/blip/blip_base.py --bert ~/models/bert-base-uncased \\
        --timm vit_base_patch16_224.augreg_in21k_ft_in1k=~/weights/vit_b16.safetensors
    python tools/data/prepare_assets.py configs/blip2/blip2_stage2_opt.py --llm ~/models/opt-2.7b

- a CLIP ``tokenizer.json``: written from the CLIP BPE merges shipped with vlp (nothing needed);
- BERT's ``vocab.txt`` and model folder (``BertTokenizer`` / ``BertEncoder`` / ``QFormer``
  ``pretrained=``): from ``--bert DIR``, a local Hugging Face folder of ``bert-base-uncased``
  (``vocab.txt``, ``config.json``, weights);
- a language model's folder (``LMTokenizer`` / the LLM's ``pretrained=``): from ``--llm DIR``,
  a local Hugging Face folder (OPT, Llama / Vicuna, FlanT5);
- timm's hub weights of a ``TimmTower(pretrained=True)``: from ``--timm NAME=FILE`` (a
  ``.safetensors`` / ``.pth`` / ``.bin`` state dict of that timm model, read weights-only),
  written into the Hugging Face cache where timm looks for them, so ``pretrained=True`` works
  offline (the alternative is ``pretrained_cfg_overlay=dict(file=FILE)`` in the config).

Folders are linked (``--copy`` copies them). Dataset files and checkpoints of earlier runs
are listed, not made: docs/own_data.md says where they come from. Exit code 0 when nothing
is left missing, 1 otherwise.
"""
import argparse
import hashlib
import os
import os.path as osp
import shutil
import sys

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, ROOT)


def _place(src: str, dst: str, copy: bool) -> None:
    src = osp.abspath(osp.expanduser(src))
    if not osp.exists(src):
        raise FileNotFoundError(f'{src} not found')
    os.makedirs(osp.dirname(osp.abspath(dst)) or '.', exist_ok=True)
    if copy:
        (shutil.copytree if osp.isdir(src) else shutil.copy2)(src, dst)
    else:
        os.symlink(src, dst, target_is_directory=osp.isdir(src))


def write_clip_tokenizer(path: str) -> None:
    """``tokenizer.json`` of CLIP's BPE from the merges shipped with vlp (49,408 ids)."""
    from vlp.datasets.tokenizers import CLIPTokenizer
    os.makedirs(osp.dirname(osp.abspath(path)) or '.', exist_ok=True)
    CLIPTokenizer(bpe_path='bundled').tokenizer.save(path)


def install_timm_weights(model_name: str, weights: str) -> str:
    """Put a local state dict of timm's ``model_name`` where ``timm.create_model(model_name,
    pretrained=True)`` finds it offline: the Hugging Face cache of its ``hf_hub_id``, as
    ``model.safetensors``. Returns the cached path."""
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from vlp.engine.checkpoint import read_state_dict
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None or not getattr(cfg, 'hf_hub_id', None):
        raise ValueError(f'timm has no hub weights for {model_name!r}: set '
                         'pretrained_cfg_overlay=dict(file=PATH) in the config instead')
    repo, _, revision = cfg.hf_hub_id.partition('@')
    state = read_state_dict(osp.expanduser(weights))
    model = timm.create_model(model_name, pretrained=False)
    expected, got = set(model.state_dict()), set(state)
    if not got & expected:
        raise ValueError(f'{weights} holds no parameter of timm model {model_name!r} '
                         f'(first keys: {sorted(got)[:5]})')
    folder = osp.join(constants.HF_HUB_CACHE, 'models--' + repo.replace('/', '--'))
    commit = hashlib.sha1(f'vlp-local:{osp.abspath(weights)}'.encode()).hexdigest()
    snapshot = osp.join(folder, 'snapshots', commit)
    os.makedirs(snapshot, exist_ok=True)
    os.makedirs(osp.join(folder, 'refs'), exist_ok=True)
    target = osp.join(snapshot, 'model.safetensors')
    save_file({k: v.contiguous() for k, v in state.items()}, target)
    with open(osp.join(folder, 'refs', revision or 'main'), 'w') as f:
        f.write(commit)
    return target


def plan(config: str):
    """The missing assets of ``config``: a list of (need, kind)."""
    from mmengine.config import Config

    from vlp.engine.preflight import TEST_PARTS, TRAIN_PARTS, preflight
    cfg = Config.fromfile(config)
    out = []
    for need in preflight(cfg, parts=TRAIN_PARTS + TEST_PARTS):
        key, owner = need.key, need.owner or ''
        if owner.startswith('TimmTower:'):
            kind = 'timm'
        elif owner == 'CLIPTokenizer' and key.endswith('tokenizer_file'):
            kind = 'clip_tokenizer'
        elif owner == 'BertTokenizer' or (key.endswith('.pretrained') and
                                           owner in ('BertEncoder', 'QFormer', 'BertTokenizer')):
            kind = 'bert'
        elif owner == 'LMTokenizer' or '.llm.' in key + '.' or key.endswith('llm.pretrained'):
            kind = 'llm'
        elif 'bert' in need.path.lower():
            kind = 'bert'
        else:
            kind = 'other'
        out.append((need, kind))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--bert', help='a local Hugging Face folder of bert-base-uncased')
    p.add_argument('--llm', help="a local Hugging Face folder of the config's language model")
    p.add_argument('--timm', action='append', default=[], metavar='NAME=FILE',
                   help='local weights of timm model NAME (repeatable)')
    p.add_argument('--copy', action='store_true', help='copy folders instead of linking them')
    p.add_argument('--dry-run', action='store_true', help='say what would be done')
    args = p.parse_args(argv)
    timm_files = dict(t.split('=', 1) for t in args.timm)
    done, left = [], []
    for need, kind in plan(args.config):
        path = need.path
        try:
            if kind == 'clip_tokenizer':
                action = f'write {path} from the CLIP BPE merges shipped with vlp'
                if not args.dry_run:
                    write_clip_tokenizer(path)
            elif kind == 'bert' and args.bert:
                src = osp.join(args.bert, osp.basename(path)) if path.endswith('.txt') else args.bert
                action = f'{"copy" if args.copy else "link"} {src} -> {path}'
                if not args.dry_run and not osp.exists(path):
                    _place(src, path, args.copy)
            elif kind == 'llm' and args.llm:
                action = f'{"copy" if args.copy else "link"} {args.llm} -> {path}'
                if not args.dry_run and not osp.exists(path):
                    _place(args.llm, path, args.copy)
            elif kind == 'timm':
                name = need.owner.split(':', 1)[1]
                if name not in timm_files:
                    left.append(f'{path} ({need.key}): give --timm {name}=FILE, or set '
                                f'{need.key[:-len(".pretrained")]}.pretrained_cfg_overlay='
                                'dict(file=FILE) in the config')
                    continue
                action = f'install {timm_files[name]} as the hub weights of {name}'
                if not args.dry_run:
                    action += f' ({install_timm_weights(name, timm_files[name])})'
            else:
                hint = {'bert': 'give --bert DIR (a local bert-base-uncased folder)',
                        'llm': 'give --llm DIR (a local Hugging Face model folder)'}.get(kind)
                left.append(f'{path} ({need.key}): ' + (hint or f'{need.what}: {need.how}'))
                continue
        except (OSError, ValueError) as e:
            left.append(f'{path} ({need.key}): {e}')
            continue
        done.append(action)
    for line in dict.fromkeys(done):
        print(('would ' if args.dry_run else '') + line)
    if left:
        print(f'\nstill missing ({len(left)}):')
        for line in dict.fromkeys(left):
            print('  ' + line)
    else:
        print(f'every asset {args.config} names is there' if not done or not args.dry_run
              else '')
    return 1 if left else 0


if __name__ == '__main__':
    sys.exit(main())
