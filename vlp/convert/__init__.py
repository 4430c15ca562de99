"""Checkpoint conversion between vlp and the formats of the reference implementations.

One mechanism runs both ways: declarative rule tables (:mod:`vlp.convert.rules`), one per
format (:mod:`vlp.convert.formats`), applied forwards to import a released checkpoint and
backwards to export a vlp model (:func:`export`, ``tools/convert/export.py``). The
command-line converters in ``tools/convert/`` are thin wrappers around this package.
"""
from .exporters import EXPORTERS, export
from .io import (build_vlp_model, cast_state_dict, check_state_dict, read_checkpoint,
                 read_hf_weights, save_vlp, unwrap_model, vlp_expected, vlp_model_cfg,
                 write_hf_folder, write_open_clip_folder)
from .rules import (SCALAR, TRANSPOSE, UNSQUEEZE0, Add, ConversionReport, Copy, Drop, Fn,
                    Fuse, Merge, Rename, Split, Tied, check_keys, convert_state_dict, nest,
                    reshape, reverse_table)

__all__ = ['Rename', 'Fuse', 'Split', 'Merge', 'Drop', 'Tied', 'Add', 'Copy', 'Fn', 'nest',
           'reshape', 'TRANSPOSE', 'UNSQUEEZE0', 'SCALAR', 'reverse_table', 'ConversionReport',
           'convert_state_dict', 'check_keys', 'read_checkpoint', 'read_hf_weights',
           'save_vlp', 'write_hf_folder', 'write_open_clip_folder', 'cast_state_dict',
           'check_state_dict', 'build_vlp_model', 'vlp_expected', 'vlp_model_cfg',
           'unwrap_model', 'EXPORTERS', 'export']
