"""docs/design.md's tree (section 1) names only files and folders that exist: every ``name/``
that starts a line is a folder under the one above it, and every ``*.py`` named on a line
is a file in (or, for an example such as ``albef_adamw_cosine_30e.py``, below) the folder
that line describes; a name with a folder (``backbones/bert.py``) may start from a folder
above it. Placeholders (``<model>_base.py``, ``tools/convert/*.py``) are skipped.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tree_entries():
    """``(folder, token)`` for each ``.py`` or ``name/`` token of the tree block."""
    text = (ROOT / 'docs' / 'design.md').read_text()
    block = text.split('## 1. The shape', 1)[1].split('```', 2)[1]
    stack = []  # (indent, folder) of the folders that start lines
    entries = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        first = line.split()[0]
        if indent < 20 and first.endswith('/') and re.fullmatch(r'[\w./_-]+/', first):
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1] if stack else ROOT
            folder = parent / first.rstrip('/')
            stack.append((indent, folder))
            entries.append((parent, first))
            rest = line[indent + len(first):]
        elif indent < 20 and first.endswith('.py'):  # a top-level file (setup.py)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            entries.append((stack[-1][1] if stack else ROOT, first))
            rest = line[indent + len(first):]
        else:
            rest = line
        here = stack[-1][1] if stack else ROOT
        for token in re.split(r'[\s(),;:`]+', rest):
            if token.endswith('.py') and '<' not in token and '*' not in token:
                entries.append((here, token))
    return entries


def test_design_tree_names_what_exists():
    entries = tree_entries()
    assert len(entries) > 60  # the block was found and read
    missing = []
    for folder, token in entries:
        bases = [folder, *[p for p in folder.parents if ROOT in (p, *p.parents)]]
        if any((base / token).exists() for base in bases):  # a/b.py: from a folder above too
            continue
        if '/' not in token and token.endswith('.py') and any(folder.rglob(token)):
            continue  # an example of the folder's files
        missing.append(f'{token} (in {folder.relative_to(ROOT)})')
    assert not missing, f'docs/design.md names paths that do not exist: {missing}'
