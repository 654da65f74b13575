# Shared by the check scripts (sourced, not run): the repository root, the build folder, the
# `gpt` binary, and a virtual environment with the Python packages a check needs.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

# Sets $gpt: GPT_BIN if given, else the release build (built if needed).
gpt_binary() {
  if [ -n "${GPT_BIN:-}" ]; then gpt="$GPT_BIN"; else
    cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
    gpt="$target/release/gpt"
  fi
}

# python_venv DIR IMPORTS PACKAGE...: a virtual environment at DIR where `import IMPORTS` works,
# installing the packages when it does not.
python_venv() {
  local dir="$1" imports="$2"
  shift 2
  if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c "import $imports" 2>/dev/null; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
  fi
}
