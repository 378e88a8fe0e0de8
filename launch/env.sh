# Sourced by the launchers: makes `python` one that can run memreasoner_jax from this checkout.
#
# If the current python cannot import memreasoner_jax.main from the checkout, a virtual
# environment is created (once) and the project installed into it with pip.
#   MEMREASONER_VENV   where that environment lives (default: <checkout>/.venv)
#   MEMREASONER_EXTRA  pip extra to install with it: cuda, tpu or empty for CPU (default: empty)

memreasoner_env() {
  local repo="$1"
  if (cd "$repo" && python -c "import memreasoner_jax.main" >/dev/null 2>&1); then
    return 0
  fi
  local venv="${MEMREASONER_VENV:-$repo/.venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "Creating $venv and installing memreasoner_jax${MEMREASONER_EXTRA:+[$MEMREASONER_EXTRA]}" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e "$repo${MEMREASONER_EXTRA:+[$MEMREASONER_EXTRA]}"
  fi
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
}
