"""tools/data/vqa_answer_list.py on tiny VQAv2 annotation files (official and ALBEF/BLIP
list formats): counts, normalisation, --min-count / --top-k, output formats, errors."""
import json

import pytest

from conftest import load_tool  # noqa: E402
from vlp.evaluation.metrics.vqa import load_answer_list

tool = load_tool('data/vqa_answer_list')


def _official(path, questions):
    """questions: [(multiple_choice_answer, [10 human answers])]."""
    anns = [dict(question_id=i, image_id=i, multiple_choice_answer=mc, answer_type='other',
                 question_type='what',
                 answers=[dict(answer=a, answer_confidence='yes', answer_id=j + 1)
                          for j, a in enumerate(answers)])
            for i, (mc, answers) in enumerate(questions)]
    path.write_text(json.dumps(dict(data_subtype='train2014', annotations=anns)))
    return str(path)


@pytest.fixture
def files(tmp_path):
    # train: 'yes' x3 majority, '2' x2 ('two' normalises to '2'), 'red' x1
    train = _official(tmp_path / 'train.json', [
        ('yes', ['yes'] * 10), ('Yes', ['yes'] * 8 + ['no'] * 2), ('yes.', ['yes'] * 10),
        ('two', ['two'] * 6 + ['2'] * 4), ('2', ['2'] * 10), ('red', ['red'] * 9 + ['no'])])
    # val: 'no' x2, 'red' x1
    val = _official(tmp_path / 'val.json', [
        ('no', ['no'] * 10), ('no', ['no'] * 7 + ['yes'] * 3), ('red', ['red'] * 10)])
    return tmp_path, train, val


def test_majority_answers_min_count_and_order(files):
    tmp, train, val = files
    out = str(tmp / 'answers.json')
    answers = tool.main([out, train, val, '--min-count', '2'])
    # counts after normalisation: yes 3, 2 2, red 2, no 2 -> by count, then alphabetically
    assert answers == ['yes', '2', 'no', 'red']
    assert load_answer_list(out) == answers
    assert json.load(open(out)) == answers


def test_top_k_and_text_output(files):
    tmp, train, val = files
    out = str(tmp / 'answers.txt')
    answers = tool.main([out, train, val, '--min-count', '1', '--top-k', '2'])
    assert answers == ['yes', '2']
    assert open(out).read() == 'yes\n2\n'
    assert load_answer_list(out) == answers


def test_all_human_answers_counted_once_per_question(files):
    tmp, train, val = files
    answers = tool.main([str(tmp / 'a.json'), train, val, '--field', 'answers',
                         '--min-count', '3', '--top-k', '0'])
    # questions giving each answer: yes 4 (train 0-2, val 1), no 4 (train 1 and 5, val 0-1;
    # a tie, so alphabetical), 2 2 (< 3), red 2 (< 3)
    assert answers == ['no', 'yes']


def test_albef_list_format(tmp_path):
    path = tmp_path / 'vqa_train.json'
    path.write_text(json.dumps([
        dict(question_id=1, question='q?', image='train2014/x_1.jpg', answer=['cat', 'cat']),
        dict(question_id=2, question='q?', image='train2014/x_2.jpg', answer='Cat'),
        dict(question_id=3, question='q?', image='train2014/x_3.jpg', answer=['dog'])]))
    out = str(tmp_path / 'a.json')
    assert tool.main([out, str(path), '--field', 'answers', '--min-count', '2']) == ['cat']
    with pytest.raises(ValueError, match='multiple_choice_answer'):
        tool.main([out, str(path)])


def test_errors(files, tmp_path):
    _, train, _ = files
    with pytest.raises(SystemExit, match='not found'):
        tool.main([str(tmp_path / 'o.json'), str(tmp_path / 'missing.json')])
    with pytest.raises(SystemExit, match='nothing written'):
        tool.main([str(tmp_path / 'o.json'), train])  # default --min-count 9
    questions = tmp_path / 'questions.json'
    questions.write_text(json.dumps(dict(questions=[])))
    with pytest.raises(ValueError, match='annotations'):
        tool.main([str(tmp_path / 'o.json'), str(questions)])
