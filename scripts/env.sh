# Sourced by scripts/test and scripts/demo: a project virtualenv with calsync installed.
# CALSYNC_EXTRAS names the extras to install: scripts/test wants dev,postgres (the default: the test tools),
# scripts/demo only demo (no Playwright, msgraph-sdk or the rest of the test tools). The extras installed
# are kept in the stamp file; it re-installs when pyproject.toml changed since, or when other extras are
# asked for (a demo virtualenv gets the test tools from the first ./scripts/test; a test one serves the demo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CALSYNC_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${CALSYNC_EXTRAS:-dev,postgres}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.calsync-installed"
installed=""
if [ -f "$stamp" ]; then
  installed="$(cat "$stamp")"
  if [ -z "$installed" ]; then installed="dev,postgres"; fi  # a stamp from before it named the extras
fi
if [ "$EXTRAS" = demo ] && [ "$installed" = dev,postgres ]; then
  EXTRAS=dev,postgres  # a test virtualenv holds all the demo needs: keep it whole
fi
if [ "$installed" != "$EXTRAS" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  # --no-compile: byte-compiling every installed module took about a third of the install; Python compiles
  # what it imports, when it first imports it
  "$VENV/bin/python" -m pip install --quiet --no-compile --disable-pip-version-check -e "$ROOT[$EXTRAS]"
  # ... but where PYTHONDONTWRITEBYTECODE is set (as on the CI machines) nothing is ever written, and every
  # process compiled what it imports anew: `calsync --help` took 2.4-3.0 s, 1.1 s once compiled. So the
  # virtualenv and the sources are compiled once here, on both cores (about 30 s; a file that does not
  # compile, such as a template under site-packages, is left to its importer). Python still checks each
  # source's time against its compiled copy, so an edited module is never run stale.
  "$VENV/bin/python" -m compileall -q -j 0 "$ROOT/src" "$VENV/lib" > /dev/null 2>&1 || true
  printf '%s\n' "$EXTRAS" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
# PostgreSQL for the tests is NOT started here (the demo needs none): scripts/test calls calsync_pg_url,
# which prints the URL of a server it found or started (scripts/postgres.sh) and fails when there is none.
calsync_pg_url() { bash "$ROOT/scripts/postgres.sh" start; }
