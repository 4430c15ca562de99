# CLIP4Clip tiny demo (Luo et al. 2022, "CLIP4Clip: An Empirical Study of CLIP for End to
# End Video Clip Retrieval", mean pooling "meanP"): the CLIP demo's towers trained on
# short generated videos of the demo scenes (the objects drift, the noise flickers; mp4
# files written once to ~/.cache/vlp/demo_videos with OpenCV and read back with decord).
# 4 frames per clip: one drawn in each of 4 equal segments for training, the segment centres
# for evaluation; each frame encoded by the image tower, the normalised frame features
# averaged. Test: video-text retrieval on 200 videos x 5 captions.
# `python tools/train.py configs/clip/clip4clip_tiny_demo.py`; figures in docs/data.md.
_base_ = ['./clip_tiny_demo.py']
num_frames = 4
image_size = 64
video_tokenizer = {{_base_.demo_tokenizer}}
train_dataloader = dict(
    batch_size=64,
    dataset=dict(_delete_=True, type='DemoVideoText', split='train', image_size=image_size,
                 pipeline=[dict(type='LoadVideoFrames', num_frames=num_frames,
                                sampling='random_segment'),
                           dict(type='Tokenize', tokenizer=video_tokenizer)]))
eval_pipeline = [dict(type='LoadVideoFrames', num_frames=num_frames, sampling='uniform'),
                 dict(type='Tokenize', tokenizer=video_tokenizer)]
val_dataloader = dict(
    batch_size=50,
    dataset=dict(_delete_=True, type='DemoVideoText', split='val', image_size=image_size,
                 pipeline=eval_pipeline))
test_dataloader = dict(
    batch_size=50,
    dataset=dict(_delete_=True, type='DemoVideoText', split='test', image_size=image_size,
                 pipeline=eval_pipeline))
# the CLIP demo's schedule (15 epochs); batches of 64 clips
default_hooks = dict(logger=dict(interval=5))
auto_scale_lr = dict(base_batch_size=64)
