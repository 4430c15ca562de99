# Sourced by the launch scripts: the interpreter to run vlp with. The repo's virtual
# environment when there is one (the README's install makes .venv/), else python3 on the
# PATH; PYTHON=/path/to/python overrides both. Expects ROOT (the repository root).
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"
    else PYTHON=$(command -v python3 || command -v python); fi
fi
