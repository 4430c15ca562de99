# LLaVA's LCS-558K image-caption pairs (BLIP captions of LAION / CC / SBU images) for the
# feature-alignment stage, read as pretrain_4m.py reads ALBEF's JSON files; LLaVA-1.5's
# 665K instruction mix (llava_v1_5_mix665k.json) is read the same way (ann_file). Expected
# layout (not downloaded by vlp): data/llava/blip_laion_cc_sbu_558k.json (+ the images).
_base_ = ['./pretrain_4m.py']
train_dataloader = dict(batch_size=32, num_workers=4,
                        dataset=dict(data_root='data/llava',
                                     ann_file='blip_laion_cc_sbu_558k.json'))
