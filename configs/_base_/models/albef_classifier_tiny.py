# ALBEF's task classifier (albef_classifier.py) at the toy size of
# configs/albef/albef_tiny_demo.py, whose checkpoint the task demos start from: the same
# towers with the caption vocabulary grown to the demo tasks' one (115 words; the new words'
# embeddings start at their init), no dropout; no ITC / ITM / MLM heads, no momentum twins.
_base_ = ['./albef_classifier.py']
image_size = 64
width = 96
vocab_size = 115  # the 'tasks' vocabulary (tests/test_task_demos.py checks it)
__bert = dict(vocab_size=vocab_size, hidden_size=width, num_heads=4, intermediate_size=4 * width,
              max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0)
model = dict(
    model=dict(
        vision=dict(model_name='vit_base_patch16_224', img_size=image_size, patch_size=8,
                    embed_dim=width, depth=3, num_heads=4),
        text=dict(__bert, num_layers=2),
        fusion=dict(__bert, num_layers=2, cross_attention_dim=width,
                    pretrained_layer_offset=0),
        vision_proj=dict(in_dim=width, out_dim=64, bias=False, init_std=None),
        text_proj=dict(in_dim=width, out_dim=64, bias=False, init_std=None),
        itm_head=None, mlm_head=None, itc=None, momentum_distill=False,
        data_preprocessor=None,
        tokenizer=dict(_delete_=True, type='DemoTokenizer', style='bert', vocabulary='tasks',
                       max_length=24)),
    drop_parts=('vision_proj', 'text_proj', 'vision_m', 'text_m', 'fusion_m',
                'vision_proj_m', 'text_proj_m'),
    head=dict(in_channels=width, hidden_channels=width))
