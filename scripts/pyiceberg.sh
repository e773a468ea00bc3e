#!/usr/bin/env bash
# Installs pyiceberg (with SQLAlchemy, psycopg2 and pyarrow) into a virtualenv under /var/tmp
# once, and prints the path of its Python: the oracle of the iceberg destination tests
# (tests/destinations/iceberg.rs reads it from ETL_PYICEBERG).
#
#   ETL_PYICEBERG="$(scripts/pyiceberg.sh)"
set -euo pipefail
venv="${ETL_PYICEBERG_VENV:-/var/tmp/etl-pyiceberg-venv}"
version="0.12.0"
python="$venv/bin/python"
if ! "$python" -c "import pyiceberg, sqlalchemy, psycopg2, pyarrow; assert pyiceberg.__version__ == '$version'" >/dev/null 2>&1; then
    echo "==> installing pyiceberg $version into $venv" >&2
    python3 -m venv "$venv" >&2 \
        || { echo "error: cannot create a virtualenv at $venv (on Debian: apt-get install python3-venv)" >&2; exit 1; }
    "$venv/bin/pip" install -q --disable-pip-version-check "pyiceberg[sql-postgres,pyarrow]==$version" >&2 \
        || { echo "error: cannot install pyiceberg $version from PyPI" >&2; exit 1; }
fi
echo "$python"
