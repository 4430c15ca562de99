"""Official VQA accuracy (vqaEval.py of the VQA API): normalisation, the leave-one-out
accuracy on hand-worked cases, soft targets, answer lists and the VQAAccuracy metric."""
import json

import pytest

from vlp.evaluation.metrics.vqa import (CONTRACTIONS, VQAAccuracy, answer_scores,
                                        build_answer_list, load_answer_list,
                                        normalize_answer, process_punctuation,
                                        save_answer_list, vqa_accuracy)
from vlp.registry import METRICS


@pytest.mark.parametrize('raw, expected', [
    ('Two', '2'), ('none', '0'), ('Ten', '10'), ('the dog', 'dog'), ('An apple', 'apple'),
    ('yes.', 'yes'), ('2.5', '2.5'), ('dont', "don't"), ('isnt it', "isn't it"),
    ('1,000', '1000'),            # digit comma: every punctuation mark deleted
    ('red,blue', 'red blue'),     # no digit comma, no space around: replaced by a space
    ('red, blue', 'red blue'),    # followed by a space: deleted
    ('x-ray', 'x ray'), ('hello?', 'hello'), ('  yes\n', 'yes'), ('a\tcat', 'cat'),
    ("it's", "it's"), ('A Man', 'man'), ('Im', 'im'),  # capitalised keys never match
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_punctuation_quirks():
    # a mark touching a space anywhere deletes every occurrence of that mark
    assert process_punctuation('a-b - c') == 'ab  c'
    # the period regex removes a '.' not followed by a digit, at most 32 of them
    assert process_punctuation('.' * 40) == '.' * 8
    assert process_punctuation('3.14.') == '3.14'
    assert CONTRACTIONS['wont'] == "won't" and len(CONTRACTIONS) > 100


def test_vqa_accuracy_hand_worked():
    # 2 of 10 match: the 2 subsets without a match-answer see 1 (1/3), the 8 others see 2
    # (2/3): (2 * 1/3 + 8 * 2/3) / 10 = 0.6
    assert vqa_accuracy('dog', ['dog'] * 2 + ['cat'] * 8) == pytest.approx(0.6)
    # 3 of 10: 3 subsets see 2 (2/3), 7 see 3 (1): (2 + 7) / 10 = 0.9
    assert vqa_accuracy('dog', ['dog'] * 3 + ['cat'] * 7) == pytest.approx(0.9)
    assert vqa_accuracy('dog', ['dog'] + ['cat'] * 9) == pytest.approx(0.3)
    assert vqa_accuracy('dog', ['dog'] * 4 + ['cat'] * 6) == pytest.approx(1.0)
    assert vqa_accuracy('cow', ['dog'] * 4 + ['cat'] * 6) == 0.0
    # normalisation on both sides
    assert vqa_accuracy('Two', ['2'] * 5 + ['3'] * 5) == pytest.approx(1.0)
    assert vqa_accuracy('the dog', ['dog'] * 3 + ['a cat'] * 7) == pytest.approx(0.9)
    assert vqa_accuracy('yes.', ['yes'] * 9 + ['no']) == pytest.approx(1.0)
    assert vqa_accuracy('dont', ["don't"] * 4 + ['no'] * 6) == pytest.approx(1.0)
    assert vqa_accuracy('1,000', ['1000'] * 2 + ['many'] * 8) == pytest.approx(0.6)
    # N != 10: same leave-one-out average over N: (1/3 + 1/3 + 2/3) / 3
    assert vqa_accuracy('a', ['a', 'a', 'b']) == pytest.approx(4 / 9)
    with pytest.raises(ValueError):
        vqa_accuracy('a', [])


def test_official_normalises_only_when_humans_disagree():
    assert vqa_accuracy('yes.', ['yes'] * 10) == 0.0  # official: no normalisation
    assert vqa_accuracy('Yes', ['yes'] * 10) == 0.0
    assert vqa_accuracy('yes.', ['yes'] * 10, normalize='always') == 1.0
    assert vqa_accuracy(' yes\n', ['yes'] * 10) == 1.0  # strip always applies
    assert vqa_accuracy('Two', ['2'] * 5 + ['3'] * 5, normalize='none') == 0.0


def test_answer_scores():
    answers = ['dog'] + ['cat'] * 2 + ['Cow'] * 3 + ['yes'] * 4
    expected = {'dog': 0.3, 'cat': 0.6, 'cow': 0.9, 'yes': 1.0}
    for mode in ('vqa', 'butd'):
        scores = answer_scores(answers, mode)
        assert scores.keys() == expected.keys()
        for k, v in expected.items():
            assert scores[k] == pytest.approx(v), (mode, k)
    assert answer_scores(['Two', '2', 'the dog'], 'butd') == {'2': 0.6, 'dog': 0.3}
    vqa = answer_scores(['x', 'x', 'y'], 'vqa')
    assert vqa['x'] == pytest.approx(4 / 9) and vqa['y'] == pytest.approx(2 / 9)
    assert answer_scores(['x'] * 7, 'butd') == {'x': 1.0}
    with pytest.raises(ValueError):
        answer_scores(['a'], 'soft')


def test_build_save_load_answer_list(tmp_path):
    questions = [['yes', 'Yes', 'no'], ['yes'], ['no', 'two'], ['2'], ['cat'], ['yes.']]
    # each question counts an answer once: yes 3, no 2, 2 2, cat 1
    assert build_answer_list(questions, min_count=2) == ['yes', '2', 'no']
    assert build_answer_list(questions, min_count=2, top_k=2) == ['yes', '2']
    assert build_answer_list(questions, min_count=1) == ['yes', '2', 'no', 'cat']
    vocab = ['yes', '2', 'no']
    save_answer_list(vocab, str(tmp_path / 'a.json'))
    save_answer_list(vocab, str(tmp_path / 'a.txt'))
    assert json.loads((tmp_path / 'a.json').read_text()) == vocab
    assert load_answer_list(str(tmp_path / 'a.json')) == vocab
    assert load_answer_list(str(tmp_path / 'a.txt')) == vocab
    (tmp_path / 'd.json').write_text(json.dumps({'no': 2, 'yes': 0, '2': 1}))
    assert load_answer_list(str(tmp_path / 'd.json')) == vocab
    (tmp_path / 'bad.json').write_text(json.dumps({'no': 3, 'yes': 0}))
    with pytest.raises(ValueError):
        load_answer_list(str(tmp_path / 'bad.json'))


def _samples():
    return [
        dict(question_id=1, pred_answer='yes', answers=['yes'] * 10, answer_type='yes/no'),
        dict(question_id=2, pred_answer='no', answers=['yes'] * 10, answer_type='yes/no'),
        dict(question_id=3, pred_answer='two', answers=['2'] * 2 + ['3'] * 8,
             answer_type='number'),
        dict(question_id=4, pred_answer='dog', answers=['dog'] * 3 + ['cat'] * 7,
             answer_type='other'),
    ]


def test_vqa_metric_per_type_and_submission(tmp_path):
    out = tmp_path / 'sub' / 'vqa_result.json'
    metric = METRICS.build(dict(type='VQAAccuracy', output_file=str(out)))
    assert isinstance(metric, VQAAccuracy)
    metric.process(None, _samples()[:2])
    metric.process(None, _samples()[2:])
    res = metric.evaluate(4)
    assert res['vqa/accuracy'] == pytest.approx(100 * (1 + 0 + 0.6 + 0.9) / 4)
    assert res['vqa/accuracy_yes/no'] == pytest.approx(50.0)
    assert res['vqa/accuracy_number'] == pytest.approx(60.0)
    assert res['vqa/accuracy_other'] == pytest.approx(90.0)
    sub = json.loads(out.read_text())
    assert sub == [dict(question_id=1, answer='yes'), dict(question_id=2, answer='no'),
                   dict(question_id=3, answer='two'), dict(question_id=4, answer='dog')]


def test_vqa_metric_test_dev_only_dumps(tmp_path):
    out = tmp_path / 'test_dev.json'
    metric = VQAAccuracy(output_file=str(out), prefix='vqa_test')
    metric.process(None, [dict(question_id=7, pred_answer='yes', answers=[]),
                          dict(question_id=8, pred_answer='2')])
    assert metric.evaluate(2) == {}
    assert json.loads(out.read_text()) == [dict(question_id=7, answer='yes'),
                                           dict(question_id=8, answer='2')]


def test_vqa_metric_skips_unanswered_and_untyped():
    metric = VQAAccuracy()
    metric.process(None, [dict(question_id=1, pred_answer='a', answers=['a'] * 10),
                          dict(question_id=2, pred_answer='b', answers=[])])
    assert metric.evaluate(2) == {'vqa/accuracy': 100.0}
    with pytest.raises(KeyError):
        metric.process(None, [dict(question_id=3, answers=['a'])])
