"""Export: a vlp model (config + weights in any checkpoint layout) -> a reference format.

``EXPORTERS`` maps the ``--to`` names of ``tools/convert/export.py`` to the formats'
``export(model_cfg, state_dict, out_dir, dtype, **options)``; each runs its format's rule
table backwards with the strict check against the reference model (built on the meta
device from the config the export writes).
"""
from typing import Callable, Dict, Mapping, Optional, Union

import torch

from .formats import blip, blip2, coca, hf_clip, open_clip, vilt
from .io import (NO_WEIGHTS_ONLY_HINT, read_checkpoint, strip_prefix, unwrap_model,
                 vlp_model_cfg)

#: format name -> (export function, the class that loads the result)
EXPORTERS: Dict[str, tuple] = {
    'hf_clip': (hf_clip.export, 'transformers.CLIPModel.from_pretrained(out_dir)'),
    'open_clip': (open_clip.export, "open_clip.create_model('local-dir:' + out_dir)"),
    'open_clip_coca': (coca.export, "open_clip.create_model('local-dir:' + out_dir)"),
    'hf_blip': (blip.export, 'transformers.BlipForImageTextRetrieval / '
                'BlipForConditionalGeneration.from_pretrained(out_dir)'),
    'hf_blip2': (blip2.export, 'transformers.Blip2ForConditionalGeneration'
                 '.from_pretrained(out_dir)'),
    'hf_vilt': (vilt.export, 'transformers.ViltModel / ViltForMaskedLM / '
                'ViltForImageAndTextRetrieval.from_pretrained(out_dir)'),
}


def export(to: str, config: Union[str, Mapping],
           checkpoint: Union[str, Mapping, torch.nn.Module], out_dir: str,
           dtype: Optional[torch.dtype] = None, weights_only: bool = True, **options) -> dict:
    """Export a vlp model to the format ``to`` (a key of :data:`EXPORTERS`).

    Args:
        config: a vlp config file (or its dict / the model dict).
        checkpoint: vlp weights: any layout :func:`~vlp.convert.io.read_checkpoint`
            reads (a converter's ``model.pth``, an mmengine or DeepSpeed training
            checkpoint, ``.safetensors``), a state dict or the model itself (DDP /
            DeepSpeed / mmengine wrappers are unwrapped).
        dtype: dtype of the floating tensors written (``None`` keeps them).
        options: format options (``kind=`` for BLIP / ViLT, ...).
    """
    if to not in EXPORTERS:
        raise KeyError(f'unknown export format {to!r} (choose from {sorted(EXPORTERS)})')
    fn: Callable = EXPORTERS[to][0]
    model_cfg = vlp_model_cfg(config)
    if isinstance(checkpoint, str):
        state = read_checkpoint(checkpoint, weights_only, opt_out=NO_WEIGHTS_ONLY_HINT)
    elif isinstance(checkpoint, torch.nn.Module):
        state = unwrap_model(checkpoint).state_dict()
    else:
        state = strip_prefix(checkpoint)
    return fn(model_cfg, state, out_dir, dtype=dtype, **options)
