"""BLIPVQA: weighted answer loss (against a manual computation), the decoder's
cross-attention to the question states, candidate ranking (against brute force), generation,
overfitting a few examples and loading a BLIP pre-training state dict."""
import json

import pytest
import torch
import torch.nn.functional as F

import vlp.models  # noqa: F401  (registers the parts)
from vlp.datasets.tokenizers import DemoTokenizer
from vlp.evaluation.metrics.vqa import normalize_answer as _normalize
from vlp.models.algorithms.blip_vqa import answer_weights
from vlp.registry import MODELS

TOK = dict(type='DemoTokenizer', style='bert', max_length=16,
           additional_special_tokens=['[DEC]', '[ENC]'])
V = 55
WIDTH = 32

QUESTIONS = ['the shape on the left', 'the shape at the top', 'is there a star',
             'what is in the middle']
ANSWER_LIST = ['red', 'blue', 'circle', 'big square', 'two', 'green star', 'left',
               'small red cross']


def text_cfg(vision_width):
    return dict(type='BertEncoder', vocab_size=V, hidden_size=WIDTH, num_layers=2,
                num_heads=2, intermediate_size=64, max_position_embeddings=32,
                type_vocab_size=0, cross_attention_layers='all', hidden_dropout=0.0,
                attention_dropout=0.0,
                cross_attention_dim=None if vision_width == WIDTH else vision_width)


def vision_cfg(width):
    return dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=32,
                patch_size=8, embed_dim=width, depth=1, num_heads=2)


def tiny_vqa(vision_width=48, **kw):
    cfg = dict(type='BLIPVQA', vision=vision_cfg(vision_width), text=text_cfg(vision_width),
               lm_head=dict(type='MLMHead', hidden_size=WIDTH, vocab_size=V),
               answer_list=ANSWER_LIST, tokenizer=TOK)
    cfg.update(kw)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def tokenizer():
    return DemoTokenizer(**{k: v for k, v in TOK.items() if k != 'type'})


def batch(B=4, seed=0):
    enc = tokenizer()(QUESTIONS[:B])
    g = torch.Generator().manual_seed(seed)
    return dict(images=torch.randn(B, 3, 32, 32, generator=g), **enc)


def manual_nll(model, q_states, q_mask, answer, eps=0.0):
    """-sum_t log p(token_t | <t, question) of '[DEC] answer [SEP]' (with label smoothing
    eps: sum_t (1 - eps) * nll_t + eps * mean_v(-log p_v))."""
    ids = tokenizer().encode(answer)
    ids[0] = model.dec_token_id
    ids = torch.tensor([ids])
    logits = model.answer_logits(ids, None, q_states, q_mask)[0, :-1]
    logp = F.log_softmax(logits.double(), -1)
    nll = -logp.gather(1, ids[0, 1:, None]).squeeze(1)
    return ((1 - eps) * nll + eps * (-logp.mean(-1))).sum()


def test_answer_weights_and_normalisation():
    uniq, w = answer_weights(['red', 'red', 'blue'])
    assert uniq == ['red', 'blue'] and w == pytest.approx([2 / 3, 1 / 3])
    assert _normalize(' Red ') == 'red'
    # VQAv2's official normalisation (articles dropped) when the VQA metric module exists
    assert _normalize('a big square') in ('big square', 'a big square')
    uniq, w = answer_weights(['Red', 'red ', 'blue', 'red', 'blue'])
    assert uniq == ['red', 'blue'] and w == pytest.approx([0.6, 0.4])


def test_loss_finite_and_backprops_everywhere():
    torch.manual_seed(0)
    model = tiny_vqa()
    model.train()
    # the decoder cross-attends to the text width (question states), not the image width
    assert model.text.blocks[0].cross_attn.kv.weight.shape[1] == 48
    assert model.decoder.blocks[0].cross_attn.kv.weight.shape[1] == WIDTH
    # separate question encoder / answer decoder; LM head tied to the decoder embeddings
    assert model.decoder.word_embeddings.weight is not model.text.word_embeddings.weight
    assert model.lm_head.decoder.weight is model.decoder.word_embeddings.weight
    answers = [['red'] * 10, ['blue', 'blue', 'circle'], ['left'], ['two', 'big square']]
    out = model(batch(), dict(answers=answers), mode='loss')
    assert set(out) == {'loss_vqa'} and torch.isfinite(out['loss_vqa'])
    out['loss_vqa'].backward()
    for name in ('vision.model.patch_embed.proj.weight', 'text.blocks.0.cross_attn.q.weight',
                 'text.blocks.1.attn.qkv.weight', 'text.word_embeddings.weight',
                 'decoder.blocks.0.cross_attn.kv.weight', 'decoder.blocks.1.attn.qkv.weight',
                 'decoder.word_embeddings.weight', 'lm_head.dense.weight'):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.momentum_pairs() == []


def test_loss_weights_follow_answer_counts():
    torch.manual_seed(0)
    model = tiny_vqa()
    model.eval()
    b = batch(B=2)
    answers = [['red', 'red', 'blue'], ['Circle ']]
    loss = model.loss(b, dict(answers=answers))['loss_vqa']
    q, m = model.encode_question(b['images'], b['input_ids'], b['attention_mask'])
    n = {(i, a): manual_nll(model, q[i:i + 1], m[i:i + 1], a)
         for i, a in ((0, 'red'), (0, 'blue'), (1, 'circle'))}
    expected = (2 / 3 * n[0, 'red'] + 1 / 3 * n[0, 'blue'] + n[1, 'circle']) / 2
    assert torch.allclose(loss.double(), expected, atol=1e-5)
    # label smoothing is configurable and applied per token before the per-sequence sum
    model.label_smoothing = 0.1
    loss = model.loss(b, [dict(answers=answers[0]), dict(answers=answers[1])])['loss_vqa']
    s = {k: manual_nll(model, q[k[0]:k[0] + 1], m[k[0]:k[0] + 1], k[1], eps=0.1) for k in n}
    expected = (2 / 3 * s[0, 'red'] + 1 / 3 * s[0, 'blue'] + s[1, 'circle']) / 2
    assert torch.allclose(loss.double(), expected, atol=1e-5)


def test_decoder_attends_to_question_states():
    torch.manual_seed(0)
    model = tiny_vqa()
    model.eval()
    b = batch(B=2)
    ids, mask = model.tokenize_answers(['big square', 'red'])

    def logits(images, q_ids, q_mask):
        q, m = model.encode_question(images, q_ids, q_mask)
        return model.answer_logits(ids, mask, q, m)

    ref = logits(b['images'], b['input_ids'], b['attention_mask'])
    other_q = tokenizer()(['is there a star', 'two shapes at the bottom'])
    assert not torch.allclose(ref, logits(b['images'], other_q['input_ids'],
                                          other_q['attention_mask']), atol=1e-4)
    # the image reaches the answer only through the question encoder (at random init its
    # effect on the logits is small but far above float32 noise: same computation path)
    flipped = logits(b['images'].flip(0), b['input_ids'], b['attention_mask'])
    assert (ref - flipped).abs().max() > 1e-6
    # the question's padding is masked in the decoder's cross-attention
    padded = b['input_ids'].masked_fill(b['attention_mask'] == 0, 7)
    assert torch.allclose(ref, logits(b['images'], padded, b['attention_mask']), atol=1e-5)
    # the decoder reads the question states: perturbing them changes the logits
    q, m = model.encode_question(b['images'], b['input_ids'], b['attention_mask'])
    assert not torch.allclose(model.answer_logits(ids, mask, q, m),
                              model.answer_logits(ids, mask, q + 0.5, m), atol=1e-4)


def test_rank_matches_brute_force_and_first_token_pruning(tmp_path):
    torch.manual_seed(0)
    model = tiny_vqa()
    model.eval()
    b = batch()
    q, m = model.encode_question(b['images'], b['input_ids'], b['attention_mask'])
    with torch.no_grad():
        scores = torch.stack([torch.stack([-manual_nll(model, q[i:i + 1], m[i:i + 1], a)
                                           for a in ANSWER_LIST]) for i in range(4)])
    best = model.rank_answers(q, m, k_test=len(ANSWER_LIST))
    assert best.tolist() == scores.argmax(1).tolist()
    # k_test=1: the candidate whose first token is the most probable
    first_ids = torch.tensor([tokenizer().encode(a)[1] for a in ANSWER_LIST])
    assert len(set(first_ids.tolist())) == len(ANSWER_LIST)  # distinct first tokens
    start = torch.full((4, 1), model.dec_token_id)
    first_prob = model.answer_logits(start, None, q, m)[:, 0].softmax(-1)[:, first_ids]
    assert model.rank_answers(q, m, k_test=1).tolist() == first_prob.argmax(1).tolist()
    # predict in rank mode: strings of the list, metadata passed through
    preds = model.predict(b, dict(question_id=torch.arange(4), answers=[['red']] * 4))
    assert [p['pred_answer'] for p in preds] == [ANSWER_LIST[i] for i in best.tolist()]
    assert [p['question_id'] for p in preds] == [0, 1, 2, 3]
    assert preds[0]['answers'] == ['red']
    # the answer list from a JSON file; tokenisation cached
    path = tmp_path / 'answer_list.json'
    path.write_text(json.dumps(ANSWER_LIST[::-1]))
    model.answer_list = str(path)
    assert model.answer_list == ANSWER_LIST[::-1]
    ids1, _ = model._answer_tokens(q.device)
    assert model._answer_tokens(q.device)[0] is ids1
    assert (ids1[:, 0] == model.dec_token_id).all()
    again = model.rank_answers(q, m, k_test=len(ANSWER_LIST))
    assert [model.answer_list[i] for i in again.tolist()] == \
        [ANSWER_LIST[i] for i in best.tolist()]


def test_generate_returns_strings_and_answer_api():
    torch.manual_seed(0)
    model = tiny_vqa(inference='generate')
    model.eval()
    out = model.predict(batch(B=2))
    assert len(out) == 2 and all(isinstance(o['pred_answer'], str) for o in out)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    greedy = model.answer(images, QUESTIONS[:2], num_beams=1)
    assert len(greedy) == 2 and all(isinstance(a, str) for a in greedy)
    ranked = model.answer(images[0], QUESTIONS[0], inference='rank')
    assert len(ranked) == 1 and ranked[0] in ANSWER_LIST
    with pytest.raises(ValueError):
        model.answer(images, QUESTIONS[:2], inference='classify')


def test_overfits_a_few_examples():
    torch.manual_seed(0)
    model = tiny_vqa()
    b = batch(B=4, seed=1)
    targets = ['red', 'big square', 'left', 'green star']
    answers = [['red'] * 3, ['big square', 'big square', 'cross'], ['left'],
               ['green star', 'green star', 'blue']]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    model.train()
    for _ in range(100):
        loss = model.loss(b, dict(answers=answers))['loss_vqa']
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    gen = model.answer_questions(b['images'], b['input_ids'], b['attention_mask'],
                                 inference='generate')
    rank = model.answer_questions(b['images'], b['input_ids'], b['attention_mask'],
                                  inference='rank', k_test=3)
    assert gen == targets, (gen, loss.item())
    assert rank == targets, (rank, loss.item())


def test_blip_pretraining_state_dict_loads():
    torch.manual_seed(0)
    blip = MODELS.build(dict(
        type='BLIP', vision=vision_cfg(WIDTH), text=text_cfg(WIDTH),
        vision_proj=dict(type='Projection', in_dim=WIDTH, out_dim=16, bias=True),
        text_proj=dict(type='Projection', in_dim=WIDTH, out_dim=16, bias=True),
        itm_head=dict(type='ITMHead', hidden_size=WIDTH),
        lm_head=dict(type='MLMHead', hidden_size=WIDTH, vocab_size=V),
        queue_size=24, tokenizer=TOK))
    blip.init_weights()
    vqa = tiny_vqa(vision_width=WIDTH)
    sd = blip.state_dict()
    res = vqa.load_state_dict(sd, strict=False)
    assert res.missing_keys == []
    prefixes = ('vision_proj.', 'text_proj.', 'itm_head.', 'vision_m.', 'vision_proj_m.',
                'text_m.', 'text_proj_m.', 'queue.', 'itc.')
    assert res.unexpected_keys and all(k.startswith(prefixes) for k in res.unexpected_keys), \
        [k for k in res.unexpected_keys if not k.startswith(prefixes)]
    own = vqa.state_dict()
    for k, v in own.items():
        assert k.split('.')[0] in ('vision', 'text', 'decoder', 'lm_head'), k
        assert torch.equal(v, sd[k]), k
    # the answer decoder is BLIP's captioning decoder: its own self-attention, the
    # (shared in BLIP) cross-attention / FFN of the text transformer, now separate tensors
    assert torch.equal(vqa.decoder.blocks[0].attn.qkv.weight,
                       blip.decoder.blocks[0].attn.qkv.weight)
    assert torch.equal(vqa.decoder.blocks[1].cross_attn.kv.weight,
                       blip.text.blocks[1].cross_attn.kv.weight)
    assert vqa.decoder.blocks[1].mlp.fc1.weight is not vqa.text.blocks[1].mlp.fc1.weight
    # a BLIP config re-typed as BLIPVQA builds (pre-training-only keys ignored)
    cfg = dict(type='BLIPVQA', vision=vision_cfg(WIDTH), text=text_cfg(WIDTH),
               lm_head=dict(type='MLMHead', hidden_size=WIDTH, vocab_size=V),
               vision_proj=dict(type='Projection', in_dim=WIDTH, out_dim=16),
               itm_head=dict(type='ITMHead', hidden_size=WIDTH), queue_size=24,
               caption_loss=dict(type='CaptionLoss'), tokenizer=TOK)
    assert not hasattr(MODELS.build(cfg), 'itm_head')
    with pytest.raises(TypeError):
        MODELS.build(dict(cfg, bogus=1))
