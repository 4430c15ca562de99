"""Preflight: every file a config needs, checked before anything is built.

A paper config names annotation files, image folders, shard patterns, tokenizer files,
pretrained weights, LLM folders and checkpoints of earlier stages, and may ask timm for hub
weights. Without this check a run fails on the first missing one, minutes in, after the
config dump, and the next run on the second one. :func:`preflight` walks the resolved config
and returns every problem at once; ``tools/train.py`` / ``tools/test.py`` print them in one
short message (each path, the config key that names it, and where the docs say how to get
or make it) and stop, and ``--dry-run`` prints the report and the resolved config.

What is checked (by the key that names a value, wherever it sits in the config):

- dataset files and folders: ``data_root``, ``ann_file`` (a list too), ``csv_file``,
  ``question_file``, ``annotation_file``, ``img_prefix``, ``img_dir``, ``urls`` (webdataset
  shard patterns, brace-expanded), joined to the dict's ``data_root`` as the datasets do;
  ``class_names`` given as a file;
- tokenizer files: ``vocab_file``, ``tokenizer_file``, ``merges_file``, ``bpe_path``, and a
  tokenizer's ``pretrained`` folder;
- weights: any ``pretrained`` / ``checkpoint`` string (a file, a folder, a run's work dir),
  ``answer_list``, the top-level ``load_from``;
- hub weights: a ``TimmTower`` with ``pretrained=True`` and no local file
  (``pretrained_cfg_overlay=dict(file=...)``) needs timm's hub download: fine when the file is
  in the Hugging Face cache or the hub can be reached; with ``HF_HUB_OFFLINE=1``, or when the
  hub does not answer, it is reported at once with the cache location and the local-file
  alternative.

Outputs (``output_file``, ``work_dir``) and top-level helper variables of config files (their
values are already substituted where they are used) are not checked.
"""
import os
import os.path as osp
import socket
from dataclasses import dataclass
from typing import List, Optional

from mmengine.config import Config

DOCS = 'docs/own_data.md'
_ROOT_RELATIVE = {'ann_file', 'csv_file', 'question_file', 'annotation_file', 'img_prefix',
                  'img_dir', 'urls'}
_DATASET_KEYS = _ROOT_RELATIVE | {'data_root', 'class_names'}
_TOKENIZER_KEYS = {'vocab_file', 'tokenizer_file', 'merges_file', 'bpe_path'}
_WEIGHT_KEYS = {'pretrained', 'checkpoint', 'answer_list'}
_SPECIAL_VALUES = {'open_clip', 'bundled'}  # CLIPTokenizer(bpe_path='bundled') etc.


@dataclass
class Need:
    """One thing the config needs that is not there."""
    path: str
    key: str
    what: str
    how: str
    owner: Optional[str] = None  # the ``type`` of the config dict that names it


def _doc(section: str) -> str:
    return f'see {DOCS}#{section}'


def _how(key: str, value: str, key_path: str) -> tuple:
    """(what it is, where to get it) for a missing value."""
    norm = value.replace(os.sep, '/')
    if key == 'load_from' or norm.startswith('work_dirs/'):
        return ('a checkpoint of an earlier run', 'train the config it comes from first (the '
                'comment next to the key names it), or give a converted checkpoint '
                '(tools/convert/) ' + _doc('pretrained-weights-and-earlier-stages'))
    if key in _TOKENIZER_KEYS or ('tokenizer' in key_path and key == 'pretrained'):
        return ('a tokenizer file', 'write it with tools/data/prepare_assets.py ' +
                _doc('tokenizers-and-vocabularies'))
    if key in ('pretrained', 'checkpoint'):
        if 'llm' in key_path or 'lm' in key_path.split('.')[-2:-1]:
            return ('a Hugging Face model folder (config.json + weights)',
                    'download it once where the hub is reachable (e.g. `huggingface-cli '
                    'download facebook/opt-2.7b --local-dir ...`) ' + _doc('language-models'))
        return ('pretrained weights', 'a local file or model folder; '
                'tools/data/prepare_assets.py lists and links them ' +
                _doc('pretrained-weights-and-earlier-stages'))
    if key == 'answer_list':
        return ('the VQA answer list', 'make it with tools/data/vqa_answer_list.py ' +
                _doc('vqa-nlvr2-snli-ve'))
    if key in ('data_root', 'img_prefix', 'img_dir'):
        return ('a data folder', 'download the dataset, or point data_root at your copy ' +
                _doc('your-images-and-captions'))
    return ('an annotation file', 'the public annotation files or your own in the same '
            'format ' + _doc('your-images-and-captions'))


def _exists(path: str) -> bool:
    return osp.exists(osp.expanduser(path))


def _shards_missing(pattern: str) -> List[str]:
    try:
        import braceexpand
        urls = list(braceexpand.braceexpand(pattern))
    except ImportError:
        urls = [pattern]
    return [u for u in urls if '://' not in u and not _exists(u)]


def _hub_reachable(timeout: float = 3.0) -> bool:
    host = os.environ.get('HF_ENDPOINT', 'https://huggingface.co').split('://')[-1].split('/')[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _timm_needs(model_name: str, key: str, hub_ok: Optional[List[bool]]) -> Optional[Need]:
    """A Need when timm's pretrained weights of ``model_name`` would have to be downloaded
    and cannot be; ``None`` when they are cached (or reachable)."""
    try:
        import timm
        from huggingface_hub import constants, try_to_load_from_cache
        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:  # noqa: BLE001 - an unknown name: the build will say so
        return None
    if cfg is None:
        return None
    repo = getattr(cfg, 'hf_hub_id', None)
    if repo:
        repo = repo.split('@')[0]
        for fname in ('model.safetensors', 'pytorch_model.bin', 'open_clip_pytorch_model.bin'):
            hit = try_to_load_from_cache(repo, fname)
            if isinstance(hit, str) and osp.isfile(hit):
                return None
        cache = constants.HF_HUB_CACHE
    else:
        cache = osp.join(os.environ.get('TORCH_HOME', '~/.cache/torch'), 'hub', 'checkpoints')
    offline = os.environ.get('HF_HUB_OFFLINE', '0') not in ('', '0', 'false', 'False')
    if not offline:
        if hub_ok[0] is None:
            hub_ok[0] = _hub_reachable()
        if hub_ok[0]:
            return None
    why = 'HF_HUB_OFFLINE is set' if offline else 'the hub cannot be reached from here'
    return Need(path=f'hub weights of timm model {model_name!r}' + (f' ({repo})' if repo else ''),
                key=key, what=f'a download that cannot succeed ({why}); the cache is {cache}',
                how='put the file there where the hub is reachable, or set '
                    f'{key[:-len(".pretrained")]}.pretrained_cfg_overlay=dict(file=PATH) to a '
                    'local weights file (or pretrained=False) ' +
                    _doc('pretrained-weights-and-earlier-stages'))


TRAIN_PARTS = ('model', 'train_dataloader', 'val_dataloader', 'custom_hooks', 'val_evaluator')
TEST_PARTS = ('model', 'test_dataloader', 'test_evaluator')


def preflight(cfg: Config, parts=TRAIN_PARTS, check_hub: bool = True,
              load_from: bool = True) -> List[Need]:
    """Every local path the ``parts`` of the config name that does not exist, and every hub
    download they need that cannot succeed (see the module docstring). ``load_from``: check
    the top-level ``load_from`` too."""
    needs: List[Need] = []
    seen = set()
    hub_ok = [None]

    def add(path: str, key: str, key_path: str, owner=None):
        if (path, key_path) in seen:
            return
        seen.add((path, key_path))
        what, how = _how(key, path, key_path)
        needs.append(Need(path=path, key=key_path, what=what, how=how, owner=owner))

    def check(value, key: str, key_path: str, root: str, owner=None):
        values = value if isinstance(value, (list, tuple)) else [value]
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v or v in _SPECIAL_VALUES or '://' in v:
                continue
            kp = key_path if len(values) == 1 and not isinstance(value, (list, tuple)) \
                else f'{key_path}.{i}'
            path = osp.join(root, v) if root and key in _ROOT_RELATIVE and not osp.isabs(v) else v
            if key == 'urls':
                for missing in _shards_missing(path)[:3]:
                    add(missing, key, kp, owner)
            elif not _exists(path):
                add(path, key, kp, owner)

    def walk(node, key_path: str):
        if isinstance(node, dict):
            root = node.get('data_root') or ''
            root = root if isinstance(root, str) else ''
            owner = node.get('type') if isinstance(node.get('type'), str) else None
            for k, v in node.items():
                kp = f'{key_path}.{k}' if key_path else str(k)
                if k in _DATASET_KEYS or k in _TOKENIZER_KEYS:
                    if k == 'class_names' and not (isinstance(v, str) and
                                                   v.endswith(('.json', '.txt'))):
                        continue
                    check(v, k, kp, root, owner)
                elif k in _WEIGHT_KEYS and isinstance(v, str):
                    check(v, k, kp, '', owner)
                else:
                    walk(v, kp)
            if check_hub and node.get('type') in ('TimmTower', 'vlp.TimmTower') and \
                    node.get('pretrained') is True and not \
                    (node.get('pretrained_cfg_overlay') or {}).get('file') and \
                    not node.get('checkpoint'):
                need = _timm_needs(node.get('model_name', ''), f'{key_path}.pretrained', hub_ok)
                if need is not None:
                    need.owner = f"TimmTower:{node.get('model_name', '')}"
                if need is not None and (need.path, need.key) not in seen:
                    seen.add((need.path, need.key))
                    needs.append(need)
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{key_path}.{i}')

    for name in parts:
        part = cfg.get(name)
        if part is not None:
            walk(part.to_dict() if hasattr(part, 'to_dict') else part, name)
    start = cfg.get('load_from') if load_from else None
    if isinstance(start, str) and not _exists(start):
        add(start, 'load_from', 'load_from')
    return needs


def format_report(config_path: str, needs: List[Need], what_for: str = 'this run') -> str:
    """One entry per missing path (with every config key that names it)."""
    if not needs:
        return f'preflight: every file {config_path} names is there'
    by_path = {}
    for n in needs:
        by_path.setdefault(n.path, []).append(n)
    lines = [f'preflight: {config_path} needs {len(by_path)} thing(s) that are missing for '
             f'{what_for}:']
    for path, group in by_path.items():
        keys = ', '.join(n.key for n in group[:3]) + (f' (+{len(group) - 3} more)'
                                                     if len(group) > 3 else '')
        lines.append(f'  {path}\n      {group[0].what}, named by {keys}\n      {group[0].how}')
    lines.append(f'Nothing was built. Fix the paths with --cfg-options or in the config '
                 f'({DOCS} walks through your own data); --dry-run prints this report and the '
                 'resolved config; --skip-preflight starts anyway.')
    return '\n'.join(lines)


def run_preflight(cfg: Config, config_path: str, tool: str, *, parts, dry_run: bool = False,
                  skip: bool = False, what_for: str = 'this run') -> None:
    """What ``tools/train.py`` / ``tools/test.py`` do before building anything: with
    ``dry_run`` print the resolved config and the report and exit (0: nothing missing, 2:
    something is); otherwise exit 2 with the report when something is missing (``skip``: warn
    and go on)."""
    import sys
    needs = preflight(cfg, parts=parts)
    report = format_report(config_path, needs, what_for)
    if dry_run:
        print(cfg.pretty_text)
        print(report)
        raise SystemExit(2 if needs else 0)
    if needs:
        if skip:
            print(f'{tool}: warning (--skip-preflight): {report}', file=sys.stderr)
            return
        print(f'{tool}: error: {report}', file=sys.stderr)
        raise SystemExit(2)
