"""``tools/run_demos.py``: the demo rerun table, ``--check``, the generated docs tables, and
bitwise reproducibility of a demo with ``randomness.deterministic=True``.

The end-to-end part runs the real command on the CLIP demo trimmed by ``--cfg-options`` to
4 iterations (64 training images, batch 16; 20 val / test images), one thread, seeds
``0 0 1``: seed 0 twice (the rerun must give bit-identical weights) and seed 1 (must
differ). About 15 s per run on a loaded 2-core machine; nothing here asserts a time.
"""
import copy
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, load_tool

run_demos = load_tool('run_demos')

TRIM = ['train_cfg.max_epochs=1',
        'train_dataloader.dataset.num_images=64', 'train_dataloader.batch_size=16',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.dataset.num_images=20', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.dataset.num_images=20', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False']
SEEDS = [0, 0, 1]


def _tool(*args):
    return subprocess.run([sys.executable, str(ROOT / 'tools' / 'run_demos.py'), *args],
                          cwd=str(ROOT), capture_output=True, text=True)


# -- the docs quote the figures file, generated ------------------------------------------
def test_docs_tables_equal_the_figures_file():
    """The tables and the figures quoted in prose (README.md, docs/*.md) are what
    docs/demo_figures.json renders to."""
    figures = run_demos.load_figures(run_demos.DEFAULT_FIGURES)
    files, with_block = run_demos.default_docs()
    assert {str(ROOT / f) for f in ('README.md', 'docs/models.md', 'docs/data.md')} <= set(files)
    assert run_demos.stale_docs(figures, files, with_block) == [], (
        'a demo table or inline figure in the docs differs from docs/demo_figures.json: '
        'regenerate it with tools/run_demos.py --write-docs (never edit it by hand)')
    readme = (ROOT / 'README.md').read_text()
    clip = figures['demos']['clip_tiny_demo']['metrics']['retrieval/txt_r1']['mean']
    assert (f'<!-- fig clip_tiny_demo retrieval/txt_r1 -->'
            f'{run_demos.fmt_value("retrieval/txt_r1", clip)}<!-- /fig -->') in readme
    # the same through the command line
    assert _tool('--check-docs').returncode == 0


def test_figures_file_covers_every_demo_and_states_its_provenance():
    figures = run_demos.load_figures(run_demos.DEFAULT_FIGURES)
    assert set(figures['demos']) == set(run_demos.discover())
    for name, d in figures['demos'].items():
        assert d['source'], name
        assert (ROOT / d['config']).is_file(), name
        for metric, s in d['metrics'].items():
            assert s['min'] <= s['mean'] <= s['max'], (name, metric)
            if d['n'] == 1:  # single runs are labelled as such wherever they are quoted
                assert s['min'] == s['max'] and 'single run' in d['source'], (name, metric)


def test_a_hand_edit_of_a_docs_table_is_caught(tmp_path):
    figures = run_demos.load_figures(run_demos.DEFAULT_FIGURES)
    readme = (ROOT / 'README.md').read_text()
    block = run_demos.render_docs_table(figures)
    clip = run_demos.fmt_value('retrieval/txt_r1', figures['demos']['clip_tiny_demo']
                               ['metrics']['retrieval/txt_r1']['mean'])
    assert f'image->text R@1 {clip}' in block  # the CLIP demo's documented figure
    edited = tmp_path / 'README.md'
    edited.write_text(readme.replace(f'image->text R@1 {clip}', 'image->text R@1 99.9', 1))
    assert run_demos.stale_docs(figures, [str(edited)]) == [str(edited)]
    res = _tool('--check-docs', '--docs', str(edited))
    assert res.returncode == 1 and 'differs' in res.stdout


def test_inline_figures_are_generated_and_checked(tmp_path):
    """``<!-- fig DEMO METRIC -->`` in prose: a hand edit is caught, --write-docs rewrites
    it from the figures file, a figure that does not exist is an error naming it."""
    figures = run_demos.load_figures(run_demos.DEFAULT_FIGURES)
    doc = tmp_path / 'prose.md'
    doc.write_text('CLIP reaches <!-- fig clip_tiny_demo retrieval/img_r1 -->12.3<!-- /fig -->% '
                   'in <!-- fig clip_tiny_demo wall -->1 s<!-- /fig -->.\n')
    assert run_demos.stale_docs(figures, [str(doc)], with_block=()) == [str(doc)]
    run_demos.write_docs(figures, [str(doc)], with_block=())
    d = figures['demos']['clip_tiny_demo']
    want = (f'CLIP reaches <!-- fig clip_tiny_demo retrieval/img_r1 -->'
            f'{run_demos.fmt_value("retrieval/img_r1", d["metrics"]["retrieval/img_r1"]["mean"])}'
            f'<!-- /fig -->% in <!-- fig clip_tiny_demo wall -->'
            f'{run_demos.fmt_duration(d["wall_s"])}<!-- /fig -->.\n')
    assert doc.read_text() == want
    assert run_demos.stale_docs(figures, [str(doc)], with_block=()) == []
    doc.write_text('<!-- fig clip_tiny_demo retrieval/itm_r1 -->1<!-- /fig -->\n')
    with pytest.raises(ValueError, match='has no figure .retrieval/itm_r1'):
        run_demos.write_docs(figures, [str(doc)], with_block=())
    assert run_demos.stale_docs(figures, [str(doc)], with_block=()) == [str(doc)]


# -- pure parts ---------------------------------------------------------------------------
def test_plan_orders_demos_after_the_demos_they_start_from():
    demos = run_demos.discover()
    order, deps = run_demos.plan(demos, ['albef_nlvr2'])
    assert order == ['albef_tiny_demo', 'albef_snli_ve_tiny_demo', 'albef_nlvr2_tiny_demo']
    assert deps['albef_nlvr2_tiny_demo'] == [('model.pretrained', 'albef_snli_ve_tiny_demo', '')]
    order, deps = run_demos.plan(demos, ['configs/blip2/blip2_stage2_tiny_demo.py'])
    assert order == ['blip2_stage1_tiny_demo', 'blip2_stage2_tiny_demo']
    # the config's variable stage1_checkpoint (substituted where it is read) is not redirected
    assert deps['blip2_stage2_tiny_demo'] == [
        ('model.stage1.checkpoint', 'blip2_stage1_tiny_demo', '/epoch_12.pth')]
    # every redirection of every demo is a key train.py's --cfg-options accepts
    from mmengine.config import Config
    from vlp.engine.config_check import check_cfg_options
    _, deps = run_demos.plan(demos, None)
    for name, found in deps.items():
        if found:
            check_cfg_options(Config.fromfile(str(ROOT / demos[name])),
                              {key: f'/tmp/{dep}{rest}' for key, dep, rest in found})
    with pytest.raises(SystemExit):
        run_demos.plan(demos, ['no_such_demo'])


def _demo(metric, values):
    return {'d': {'metrics': {metric: run_demos.stats(values)}}}


def _figures(metric, n, mean, lo, hi, tolerance=2.0):
    return {'tolerance_points': tolerance,
            'demos': {'d': {'n': n, 'metrics': {metric: dict(mean=mean, min=lo, max=hi)}}}}


def test_compare_ranges_and_tolerances():
    r1 = 'retrieval/txt_r1'
    # multi-seed figures: the rerun mean must lie in the documented min-max
    assert run_demos.compare(_demo(r1, [50, 51]), _figures(r1, 3, 50.0, 49.0, 51.0))[0]['ok']
    assert not run_demos.compare(_demo(r1, [52, 53]), _figures(r1, 3, 50.0, 49.0, 51.0))[0]['ok']
    assert run_demos.compare(_demo(r1, [52, 53]), _figures(r1, 3, 50.0, 49.0, 51.0),
                             range_slack=1.5)[0]['ok']
    # single-run figures: +- the tolerance in points
    single = _figures(r1, 1, 50.0, 50.0, 50.0)
    assert run_demos.compare(_demo(r1, [51.9]), single)[0]['ok']
    assert not run_demos.compare(_demo(r1, [52.2]), single)[0]['ok']
    assert not run_demos.compare(_demo(r1, [51.5]), single, tolerance=1.0)[0]['ok']
    # a documented figure rounded to its last digit is not a regression (49.56 -> 49.6)
    assert run_demos.compare(_demo(r1, [49.56]), _figures(r1, 3, 49.6, 49.6, 49.6))[0]['ok']
    # a point of a 0-1 figure (BLEU, CIDEr) is 0.01
    bleu = 'caption/BLEU_4'
    assert run_demos.compare(_demo(bleu, [0.44]), _figures(bleu, 1, 0.424, 0.424, 0.424))[0]['ok']
    assert not run_demos.compare(_demo(bleu, [0.45]),
                                 _figures(bleu, 1, 0.424, 0.424, 0.424))[0]['ok']
    # a documented figure the rerun did not produce fails
    assert not run_demos.compare({'d': {'metrics': {}}}, single)[0]['ok']


def test_a_single_seed_run_is_labelled_a_single_run():
    """One seed: the figure is documented as a single run (a range of one value), and the
    provenance test above accepts it; several seeds say how many."""
    figures = run_demos.load_figures(run_demos.DEFAULT_FIGURES)
    demo = dict(n=1, seeds=[0], config='configs/clip/clip_tiny_demo.py', threads='2',
                wall_s=dict(mean=300.0), peak_rss_mb=1400.0,
                metrics={'retrieval/txt_r1': dict(mean=50.0, min=50.0, max=50.0, n=1)})
    table = dict(created='2026-12-07T22:00:00', commit='abc', cfg_options=[],
                 machine=dict(cpus=2, torch='2.14.1'), demos=dict(clip_tiny_demo=demo))
    entry = run_demos.figures_from_run(table, figures)['demos']['clip_tiny_demo']
    assert entry['source'] == ('single run (seed 0), measured 2026-12-07 by '
                               'tools/run_demos.py')
    assert entry['metrics']['retrieval/txt_r1'] == dict(mean=50.0, min=50.0, max=50.0)
    table['demos']['clip_tiny_demo'] = dict(demo, n=3, seeds=[0, 1, 2])
    entry = run_demos.figures_from_run(table, figures)['demos']['clip_tiny_demo']
    assert entry['source'].startswith('3 seeds (0, 1, 2), measured 2026-12-07')
    # a note on how the runs were made is stored and shown with the source
    noted = run_demos.figures_from_run(table, figures, note='wall clocks on shared cores')
    assert noted['demos']['clip_tiny_demo']['note'] == 'wall clocks on shared cores'
    row = [l for l in run_demos.render_docs_table(noted).splitlines() if '`clip_tiny_demo`' in l]
    assert row[0].endswith('by tools/run_demos.py; wall clocks on shared cores |'), row


def test_metrics_of_a_demo_without_test_split_are_its_last_training_accuracies(tmp_path):
    vis = tmp_path / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    lines = [dict(step=20, loss=5.1, acc_mim=0.34), dict(step=40, loss=4.0, acc_mim=0.36,
                                                         acc_mlm=0.3), dict(step=40, lr=1e-3)]
    (vis / 'scalars.json').write_text('\n'.join(json.dumps(x) for x in lines) + '\n')
    metrics, where = run_demos.read_metrics(str(tmp_path))
    assert metrics == {'train/acc_mim': 0.36, 'train/acc_mlm': 0.3}
    assert 'last training log' in where


# -- end to end: a trimmed demo, seeds 0 0 1 ----------------------------------------------
@pytest.fixture(scope='module')
def rerun(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('run_demos')
    out, table = tmp / 'out', tmp / 'table'
    res = _tool('--only', 'clip', '--seeds', *map(str, SEEDS), '--threads', '1',
                '--out', str(out), '--table', str(table), '--cfg-options', *TRIM)
    assert (table.with_suffix('.json')).is_file(), res.stdout + res.stderr
    # the trimmed run is far below the documented figures: the comparison says so
    assert res.returncode == 0 and 'OUTSIDE' in res.stdout, res.stdout + res.stderr
    with open(table.with_suffix('.json')) as f:
        return tmp, out, json.load(f)


def test_table_gives_mean_and_range_over_seeds(rerun):
    tmp, out, table = rerun
    runs = [r for r in table['runs'] if r['demo'] == 'clip_tiny_demo']
    assert [(r['seed'], r['tag'], r['status']) for r in runs] == [
        (0, 'seed0', 'ok'), (0, 'seed0_rep1', 'ok'), (1, 'seed1', 'ok')]
    for r in runs:
        assert r['wall_s'] > 0 and r['peak_rss_mb'] > 0 and r['threads'] == '1'
        assert 'randomness.seed=%d' % r['seed'] in r['command']
        assert 'randomness.deterministic=True' in r['command']
        assert r['metrics_file'].endswith('.json')
    d = table['demos']['clip_tiny_demo']
    assert d['n'] == 2 and d['seeds'] == [0, 1]  # the repeat of seed 0 is not counted twice
    for metric in ('retrieval/txt_r1', 'retrieval/img_r1', 'retrieval/txt_r5'):
        vals = [runs[0]['metrics'][metric], runs[2]['metrics'][metric]]
        assert d['metrics'][metric]['mean'] == pytest.approx(sum(vals) / 2)
        assert (d['metrics'][metric]['min'], d['metrics'][metric]['max']) == (min(vals), max(vals))
    md = (tmp / 'table.md').read_text()
    s = d['metrics']['retrieval/txt_r1']
    assert (f'| `clip_tiny_demo` | image->text R@1 | {s["mean"]:.1f} | {s["min"]:.1f} | '
            f'{s["max"]:.1f} | 2 |') in md


def _state_dict(path):
    from vlp.engine.checkpoint import safe_load
    return safe_load(path, map_location='cpu')['state_dict']


def test_same_seed_bitwise_identical_weights_other_seed_differs(rerun):
    tmp, out, table = rerun
    ckpt = {r['tag']: str(ROOT / r['checkpoint']) if not osp.isabs(r['checkpoint'])
            else r['checkpoint'] for r in table['runs']}
    a, b, c = (_state_dict(ckpt[t]) for t in ('seed0', 'seed0_rep1', 'seed1'))
    assert a.keys() == b.keys() == c.keys() and len(a) > 10
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], c[k]) for k in a)
    runs = {r['tag']: r for r in table['runs']}
    assert runs['seed0']['weights_sha256'] == runs['seed0_rep1']['weights_sha256']
    assert runs['seed0']['weights_sha256'] != runs['seed1']['weights_sha256']
    assert runs['seed0']['metrics'] == runs['seed0_rep1']['metrics']
    assert table['demos']['clip_tiny_demo']['bitwise_reproducible'] is True


def test_check_passes_on_its_own_table_and_fails_on_a_doctored_range(rerun, tmp_path):
    tmp, out, table = rerun
    table_json = str(tmp / 'table.json')
    figures = tmp_path / 'figures.json'
    figures.write_text(open(run_demos.DEFAULT_FIGURES).read())
    doc = tmp_path / 'doc.md'
    doc.write_text(f'before\n{run_demos.BEGIN}\nold\n{run_demos.END}\nafter\n')
    res = _tool('--from-table', table_json, '--write-docs', '--figures', str(figures),
                '--docs', str(doc))
    assert res.returncode == 0, res.stdout + res.stderr
    written = run_demos.load_figures(str(figures))
    entry = written['demos']['clip_tiny_demo']
    assert entry['n'] == 2 and entry['seeds'] == [0, 1] and '2 seeds' in entry['source']
    assert '--cfg-options' in entry['source']  # a trimmed run says so where it is quoted
    assert entry['metrics']['retrieval/txt_r1'] == {
        k: round(v, 4) for k, v in table['demos']['clip_tiny_demo']['metrics']
        ['retrieval/txt_r1'].items() if k in ('mean', 'min', 'max')}
    # the other demos keep their documented figures; the docs block is the new rendering
    assert written['demos']['vlmo_tiny_demo'] == \
        run_demos.load_figures(run_demos.DEFAULT_FIGURES)['demos']['vlmo_tiny_demo']
    text = doc.read_text()
    assert text.startswith('before\n') and text.endswith('\nafter\n')
    assert run_demos.docs_block(str(doc)) == run_demos.render_docs_table(written)
    assert run_demos.stale_docs(written, [str(doc)]) == []

    res = _tool('--from-table', table_json, '--check', '--figures', str(figures))
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'OUTSIDE' not in res.stdout

    doctored = copy.deepcopy(written)
    s = doctored['demos']['clip_tiny_demo']['metrics']['retrieval/img_r1']
    mean = s['mean']
    s['min'], s['max'] = s['max'] + 5, s['max'] + 10  # the rerun mean is now below the range
    figures.write_text(json.dumps(doctored))
    res = _tool('--from-table', table_json, '--check', '--figures', str(figures))
    assert res.returncode == 1 and 'OUTSIDE' in res.stdout, res.stdout + res.stderr
    # and a slack that covers the gap lets it pass
    res = _tool('--from-table', table_json, '--check', '--figures', str(figures),
                '--range-slack', str(s['min'] - mean + 0.5))
    assert res.returncode == 0, res.stdout + res.stderr
