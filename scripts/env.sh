# Sourced by scripts/test and scripts/demo: a project virtualenv with calsync and its dev extras installed.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CALSYNC_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.calsync-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev,postgres]"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
# PostgreSQL for the tests is NOT started here (the demo needs none): scripts/test calls calsync_pg_url,
# which prints the URL of a server it found or started (scripts/postgres.sh) and fails when there is none.
calsync_pg_url() { bash "$ROOT/scripts/postgres.sh" start; }
