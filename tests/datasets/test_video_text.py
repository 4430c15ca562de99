"""Video-text data: the documented frame indices, decoding mp4 files written with OpenCV,
MSR-VTT annotations, a corrupt video skipped and counted, CLIP4Clip mean pooling."""
import json

import numpy as np
import pytest
import torch

import vlp.models  # noqa: F401
from vlp.datasets import (DemoVideoText, VideoTextDataset, random_segment_frame_indices,
                          uniform_frame_indices, vlp_collate)

TOK = dict(type='DemoTokenizer', style='clip', max_length=16)


def test_frame_indices():
    assert uniform_frame_indices(16, 4) == [2, 6, 10, 14]
    assert uniform_frame_indices(3, 4) == [0, 1, 1, 2]  # short videos repeat frames
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = random_segment_frame_indices(16, 4, rng)
        assert [i // 4 for i in idx] == [0, 1, 2, 3]  # one frame in each segment
    with pytest.raises(ValueError):
        uniform_frame_indices(0, 4)


def test_demo_videos_and_msrvtt_annotations(tmp_path):
    demo = DemoVideoText('test', num_videos=6, num_frames=8, cache_dir=str(tmp_path / 'c'),
                         pipeline=[dict(type='LoadVideoFrames', num_frames=4),
                                   dict(type='Tokenize', tokenizer=TOK)])
    batch = vlp_collate([demo[i] for i in range(3)])
    assert batch['image'].shape == (3, 4, 3, 64, 64) and batch['image'].dtype == torch.uint8
    assert batch['frame_inds'][0].tolist() == [1, 3, 5, 7]
    assert batch['input_ids'].shape == (3, 5, 16)  # eval: all five captions
    # the videos move: the frames differ
    assert (batch['image'][0, 0].float() - batch['image'][0, 3].float()).abs().mean() > 1
    # MSR-VTT JSON over those files, one of them corrupt
    paths = sorted((tmp_path / 'c').rglob('*.mp4'))
    vids = tmp_path / 'videos'
    vids.mkdir()
    for i, p in enumerate(paths):
        (vids / f'video{i}.mp4').write_bytes(p.read_bytes())
    (vids / 'video1.mp4').write_bytes(b'corrupt')
    ann = dict(videos=[dict(video_id=f'video{i}', split='train' if i < 2 else 'test')
                       for i in range(3)],
               sentences=[dict(video_id=f'video{i % 3}', caption=f'caption {i}')
                          for i in range(6)])
    (tmp_path / 'msrvtt.json').write_text(json.dumps(ann))
    ds = VideoTextDataset('msrvtt.json', video_root='videos', data_root=str(tmp_path),
                          split='train',
                          pipeline=[dict(type='LoadVideoFrames', num_frames=2,
                                         sampling='random_segment', size=32),
                                    dict(type='Tokenize', tokenizer=TOK)])
    assert len(ds) == 4  # 2 train videos x 2 captions
    seen = {ds[i]['video_path'].rsplit('/', 1)[1] for i in range(len(ds))}
    assert seen == {'video0.mp4'} and ds.num_skipped >= 1  # the corrupt one skipped
    assert ds[0]['image'].shape == (2, 3, 32, 32)
    with pytest.raises(FileNotFoundError):
        VideoTextDataset('nope.json', data_root=str(tmp_path))


def test_clip_mean_pools_frame_features():
    from vlp.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='CLIP',
        vision=dict(type='TimmTower', model_name='vit_base_patch16_clip_quickgelu_224',
                    img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2),
        text=dict(type='TextTransformer', vocab_size=64, context_length=16, width=32,
                  layers=1, heads=2),
        vision_proj=dict(type='Projection', in_dim=32, out_dim=8),
        text_proj=dict(type='Projection', in_dim=32, out_dim=8))).eval()
    video = torch.randn(2, 3, 3, 16, 16)
    frames = model.image_features(video.flatten(0, 1)).view(2, 3, -1)
    expected = torch.nn.functional.normalize(frames.mean(1), dim=-1)
    assert torch.allclose(model.image_features(video), expected, atol=1e-6)
