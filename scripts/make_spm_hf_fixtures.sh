#!/usr/bin/env bash
# Remakes crates/gpt/tests/fixtures/spm-hf/ (SentencePiece-style tokenizer.json files and the ids
# Hugging Face `tokenizers` gives for a list of strings) with make_spm_hf_fixtures.py. Never in CI:
# it installs `tokenizers` into a virtual environment, by default bench/.venv-spm (VENV=DIR for
# another; TOKENIZERS_VERSION pins the package).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$root/bench/.venv-spm}"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
if ! "$venv/bin/python" -c 'import tokenizers' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "tokenizers${TOKENIZERS_VERSION:+==$TOKENIZERS_VERSION}"
fi
"$venv/bin/python" "$root/scripts/make_spm_hf_fixtures.py" "$root/crates/gpt/tests/fixtures"
