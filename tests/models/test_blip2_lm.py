"""BLIP-2 stage 2 (BLIP2LM): frozen parts stay frozen and out of the optimizer, the LM loss
scores only the text, generation through HF for OPT and T5, stage-1 loading. Tiny random
towers and LMs, a word-level tokenizer built here (no download)."""
import pytest
import torch
import torch.nn.functional as F

from vlp.registry import MODELS

W = 32
WORDS = ('a photo of the red blue green circle square star small large on left right top '
         'bottom question what color is it answer :').split()
CAPTIONS = ['a red circle on the left', 'a large blue square',
            'the small green star on top', 'a blue circle']


def make_tokenizer(kind='opt'):
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast
    specials = ['<pad>', '</s>', '<unk>']
    vocab = {w: i for i, w in enumerate(specials + list(WORDS))}
    tk = Tokenizer(WordLevel(vocab, unk_token='<unk>'))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind in ('opt', 'llama'):  # decoder-only: BOS (= </s> here) first
        tk.post_processor = processors.TemplateProcessing(
            single='</s> $A', special_tokens=[('</s>', 1)])
    else:  # T5: EOS last
        tk.post_processor = processors.TemplateProcessing(
            single='$A </s>', special_tokens=[('</s>', 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token='<pad>', eos_token='</s>',
                                   bos_token='</s>', unk_token='<unk>')


VOCAB = len(WORDS) + 3
OPT = dict(model_type='opt', vocab_size=VOCAB, hidden_size=W, num_hidden_layers=2,
           ffn_dim=64, num_attention_heads=2, max_position_embeddings=64,
           word_embed_proj_dim=W, pad_token_id=0, bos_token_id=1, eos_token_id=1,
           dropout=0.0)
LLAMA = dict(model_type='llama', vocab_size=VOCAB, hidden_size=W, intermediate_size=64,
             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
             max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=1)
T5 = dict(model_type='t5', vocab_size=VOCAB, d_model=W, d_kv=16, d_ff=64, num_layers=2,
          num_decoder_layers=2, num_heads=2, pad_token_id=0, eos_token_id=1,
          decoder_start_token_id=0, dropout_rate=0.0, feed_forward_proj='gated-gelu')


def blip2(kind='opt', **kw):
    torch.manual_seed(0)
    cfg = dict(
        type='BLIP2LM',
        vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=32,
                    patch_size=8, embed_dim=W, depth=1, num_heads=4),
        qformer=dict(type='QFormer', num_query_tokens=4, encoder_width=W, vocab_size=40,
                     hidden_size=W, num_layers=2, num_heads=4, intermediate_size=64,
                     max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0),
        llm=dict(config=dict(opt=OPT, llama=LLAMA, t5=T5)[kind]),
        prompt='a photo of')
    cfg.update(kw)
    model = MODELS.build(cfg)
    model.tokenizer = make_tokenizer(kind)
    return model


def batch(model, n=4):
    images = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return dict(images=images, **model.tokenize_text(CAPTIONS[:n]))


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize('kind', ['opt', 'llama', 't5'])
def test_frozen_parts_unchanged_and_loss_decreases(kind):
    from mmengine.optim import build_optim_wrapper
    model = blip2(kind)
    model.train()
    assert not model.llm.training and not model.vision.training and model.qformer.training
    frozen = dict(llm=snapshot(model.llm), vision=snapshot(model.vision))
    trained = dict(qformer=snapshot(model.qformer), projection=snapshot(model.projection))
    # the configs' optimizer: with a paramwise_cfg (any), mmengine's default constructor
    # skips parameters with requires_grad=False (without one it would pass them all)
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0)))
    optim = wrapper.optimizer
    data = batch(model)
    losses = []
    for _ in range(5):
        loss = model(data, mode='loss')['loss_lm']
        optim.zero_grad()
        loss.backward()
        # every trainable parameter gets a gradient (DDP needs no find_unused_parameters)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    in_optim = {id(p) for g in optim.param_groups for p in g['params']}
    for part, before in frozen.items():
        for n, p in getattr(model, part).named_parameters():
            assert torch.equal(p, before[n]), f'{part}.{n} changed'
            assert p.grad is None and not p.requires_grad and id(p) not in in_optim
    for part, before in trained.items():
        assert any(not torch.equal(p, before[n])
                   for n, p in getattr(model, part).named_parameters()), part


@pytest.mark.parametrize('prompt,before,after', [
    ('a photo of', [], ['</s>', 'a', 'photo', 'of']),  # visual prompts lead (BLIP-2)
    ('the <ImageHere> photo of', ['</s>', 'the'], ['photo', 'of']),  # MiniGPT-4 style
])
def test_loss_ignores_queries_prompt_and_padding_opt(prompt, before, after):
    model = blip2('opt', prompt=prompt).eval()
    data = batch(model)
    vocab = make_tokenizer('opt').get_vocab()
    before, after = [vocab[w] for w in before], [vocab[w] for w in after]
    with torch.no_grad():
        loss = model(data, mode='loss')['loss_lm']
        prompts = model.visual_prompts(data['images'])  # (B, Q, H)
        Q = prompts.shape[1]
        total, count = 0.0, 0
        for i in range(len(CAPTIONS)):
            text = data['input_ids'][i][data['attention_mask'][i].bool()].tolist()
            pre = model.llm.embed_tokens(torch.tensor([before], dtype=torch.long))
            post = model.llm.embed_tokens(torch.tensor([after + text]))
            emb = torch.cat([pre, prompts[i:i + 1], post], 1)
            logits = model.llm.model(inputs_embeds=emb).logits[0]  # (T, V)
            start = len(before) + Q + len(after)
            pred = logits[start - 1:start - 1 + len(text)]  # predicts each text token
            total = total + F.cross_entropy(pred, torch.tensor(text), reduction='sum')
            count += len(text)
    torch.testing.assert_close(loss, total / count)


def test_per_sample_prompt_ids_equal_fixed_prompts():
    model = blip2('opt', prompt='').eval()
    data = batch(model, 2)
    hf = make_tokenizer('opt')
    rows = [hf('a photo of')['input_ids'], hf('what color')['input_ids']]
    ids = torch.zeros(2, 4, dtype=torch.long)
    mask = torch.zeros(2, 4, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    with torch.no_grad():
        # prompt ids as the data preprocessor passes them (in data_samples)
        got = model(data, dict(prompt_ids=ids, prompt_mask=mask), mode='loss')['loss_lm']
        a = blip2('opt', prompt='a photo of').eval()
        b = blip2('opt', prompt='what color').eval()
        la, lb = (m.lm_logits(data) for m in (a, b))
    # token-mean over both rows, each scored under its own prompt
    ce = [F.cross_entropy(l[i, :-1], t[i, 1:], reduction='sum')
          for i, (l, t) in enumerate((la, lb))]
    n = (data['attention_mask']).sum()
    torch.testing.assert_close(got, (ce[0] + ce[1]) / n)


def test_loss_t5_matches_hf_labels_loss():
    model = blip2('t5').eval()
    data = batch(model)
    with torch.no_grad():
        loss = model(data, mode='loss')['loss_lm']
        prompts = model.visual_prompts(data['images'])
        prefix = make_tokenizer('t5')('a photo of')['input_ids']  # prompt </s>
        emb = torch.cat([prompts, model.llm.embed_tokens(
            torch.tensor([prefix] * 4))], 1)
        labels = data['input_ids'].masked_fill(data['attention_mask'] == 0, -100)
        ref = model.llm.model(inputs_embeds=emb, labels=labels).loss
    torch.testing.assert_close(loss, ref)


@pytest.mark.parametrize('kind', ['opt', 'llama', 't5'])
def test_generate_strings_greedy_equals_one_beam(kind):
    model = blip2(kind).eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    greedy = model.generate(images, max_length=6)
    beam1 = model.generate(images, max_length=6, num_beams=1)
    assert greedy == beam1 and all(isinstance(s, str) for s in greedy)
    beams = model.generate(images, max_length=6, num_beams=3, min_length=2)
    assert len(beams) == 2
    vqa = model.generate(images, prompt=['question what color is it answer :'] * 2,
                         max_new_tokens=4)
    assert len(vqa) == 2
    # per-row prompts of different lengths (left padding for decoder-only)
    mixed = model.generate(images, prompt=['a', 'a photo of the'], max_length=4)
    assert len(mixed) == 2
    around = model.generate(images, prompt=['the <ImageHere> a', 'a <ImageHere>'],
                            max_length=4)
    assert len(around) == 2


def test_lm_tokenizer_target_format_and_tokenize_transform():
    from vlp.datasets.transforms.text import Tokenize
    from vlp.datasets.tokenizers import LMTokenizer
    tok = LMTokenizer(tokenizer=make_tokenizer('opt'), max_length=5)
    out = tok(['a red circle', 'a red circle on the left'])
    words = {w: i + 3 for i, w in enumerate(WORDS)}
    assert out['input_ids'][0].tolist() == [words['a'], words['red'], words['circle'], 1, 0]
    assert out['attention_mask'][0].tolist() == [1, 1, 1, 1, 0]
    assert out['input_ids'][1].tolist()[-1] == 1  # truncated, EOS kept
    assert tok.encode_prompt('a photo')[0] == 1  # BOS leads a prompt
    res = Tokenize(tok)(dict(text='a blue star'))
    assert res['input_ids'].shape == (5,) and res['input_ids'][3] == 1
    assert tok.decode(res['input_ids']) == 'a blue star'


def test_predict_caption_mode():
    model = blip2('opt').eval()
    data = batch(model, 2)
    out = model(data, dict(image_id=[3, 7], text=[['a'], ['b']]), mode='predict')
    assert [o['image_id'] for o in out] == [3, 7]
    assert all(isinstance(o['pred_caption'], str) for o in out)


@pytest.mark.parametrize('kind', ['opt', 't5'])
def test_predict_vqa_mode_prompts_each_question(kind):
    model = blip2(kind, predict_mode='vqa', vqa_prompt='question {} answer :',
                  generation_cfg=dict(max_length=4)).eval()
    data = batch(model, 2)
    questions = ['what color is it', 'is it red']
    out = model(data, dict(question_id=[5, 6], question=questions), mode='predict')
    assert [o['question_id'] for o in out] == [5, 6]
    # each answer is the generation with that sample's question in the prompt
    raw = data['images']
    expected = [model._generate(raw[i:i + 1], [f'question {q} answer :'])[0].strip()
                for i, q in enumerate(questions)]
    assert [o['pred_answer'] for o in out] == expected
    with pytest.raises(ValueError, match='question'):
        model(data, dict(question_id=[5, 6]), mode='predict')
    with pytest.raises(ValueError, match='vqa_prompt'):
        blip2(kind, predict_mode='vqa', vqa_prompt='no slot')


def test_unfrozen_llm_trains_and_llava_options():
    model = blip2('opt', qformer=None, use_queries=False, projector='mlp2x_gelu',
                  ln_vision=False,
                  drop_vision_prefix=1, freeze_llm=False, llm_grad_checkpointing=True)
    model.train()
    assert model.llm.training and all(p.requires_grad for p in model.llm.parameters())
    assert model.llm.grad_checkpointing
    assert not any(p.requires_grad for p in model.vision.parameters())
    before = snapshot(model.llm)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model(batch(model), mode='loss')['loss_lm']
    loss.backward()
    optim.step()
    assert any(not torch.equal(p, before[n]) for n, p in model.llm.named_parameters())
    with torch.no_grad():  # 16 patch tokens (class token dropped) as visual prompts
        assert model.visual_prompts(torch.randn(1, 3, 32, 32)).shape == (1, 16, W)


def test_freeze_qformer_and_load_stage1(tmp_path):
    src = blip2('opt')
    sd = {f'vision.{k}': v for k, v in src.vision.state_dict().items()}
    sd.update({f'qformer.{k}': v for k, v in src.qformer.state_dict().items()})
    with torch.no_grad():
        src.ln_vision.weight.mul_(2.0)
    sd.update({f'ln_vision.{k}': v for k, v in src.ln_vision.state_dict().items()})
    sd['itm_head.weight'] = torch.zeros(2, W)
    path = str(tmp_path / 'stage1.pth')
    torch.save(dict(state_dict=sd), path)
    torch.manual_seed(1)
    model = blip2('opt', freeze_qformer=True, freeze_ln_vision=True,
                  stage1=dict(checkpoint=path))
    assert torch.equal(model.ln_vision.weight, src.ln_vision.weight)
    assert not model.ln_vision.weight.requires_grad
    for a, b in zip(model.qformer.state_dict().values(), src.qformer.state_dict().values()):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in model.qformer.parameters())
    assert all(p.requires_grad for p in model.projection.parameters())
    model.train()
    assert not model.qformer.training


def test_vision_dtype_bf16():
    model = blip2('opt', vision_dtype='bf16')
    assert all(p.dtype == torch.bfloat16 for p in model.vision.parameters())
    loss = model(batch(model, 2), mode='loss')['loss_lm']
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert model.projection.weight.grad is not None
