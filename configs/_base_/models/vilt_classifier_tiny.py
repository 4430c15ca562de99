# ViLT under a task head (vilt_classifier.py) at the ViLT task demos' toy size: 4 blocks of
# width 128 over 16-px patches of the 64-px demo scenes and the demo tasks' vocabulary (115
# words), no dropout, the preprocessor's default statistics; no pre-training heads. The
# demos chain: configs/vilt/vilt_vit_init_tiny_demo.py (ViLT's image-only initialisation)
# starts from random weights, configs/vilt/vilt_vqa_tiny_demo.py from its checkpoint.
_base_ = ['./vilt_classifier.py']
image_size = 64
vocab_size = 115  # the 'tasks' vocabulary (tests/test_task_demos.py checks it)
width = 128
model = dict(
    data_preprocessor=dict(_delete_=True, type='VLPDataPreprocessor'),
    model=dict(
        backbone=dict(img_size=image_size, patch_size=16, vocab_size=vocab_size, max_text_len=24,
                      embed_dim=width, depth=4, num_heads=4, drop=0.0, ln_eps=1e-12,
                      initializer_range=0.02, max_image_len=None),
        itm_head=None, mlm_head=None, wpa=None, loss_weights=None, data_preprocessor=None,
        tokenizer=dict(_delete_=True, type='DemoTokenizer', style='bert', vocabulary='tasks',
                       max_length=24)),
    head=dict(in_channels=width, hidden_channels=None),
    pretrained=None,
    drop_parts=())
