#!/usr/bin/env bash
# The two ways to run the project, as the README gives them:
#
#   bash infra/run.sh demo [ARGS]         Python only (no apt, no Java): exec `mingo demo ARGS`
#   bash infra/run.sh test [PYTEST ARGS]  system packages, local servers, ruff, mypy, the offline
#                                         vulnerability check of requirements.lock, all tests
#   bash infra/run.sh audit               pip-audit of requirements.lock (needs pypi.org's JSON
#                                         API or osv.dev; fails when a pin cannot be checked)
#
# Both create or reuse the virtualenv .venv in the repository root and `pip install -e '.[dev]'`
# into it, skipping pip while pyproject.toml is unchanged since the last successful install.
# `test` always stops the servers it used (trap), and exits with pytest's status (1 if only the
# linters failed); pytest's 5, "no tests collected", stays a failure.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { printf '\n==> %s\n' "$*" >&2; }

usage() {
    echo "usage: bash infra/run.sh demo [ARGS...] | test [PYTEST ARGS...] | audit [ARGS...]" >&2
    exit 2
}

ensure_venv() {
    local python=${PYTHON:-python3}
    if [ ! -x .venv/bin/python ]; then
        say "creating virtualenv .venv with $python"
        if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "run.sh: $python is older than Python 3.11" >&2
            exit 1
        fi
        if ! "$python" -m venv .venv; then
            echo "run.sh: '$python -m venv' failed; on Debian/Ubuntu install python3-venv" >&2
            rm -rf .venv
            exit 1
        fi
    fi
    local stamp=.venv/.mingo-pyproject.sha256 want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x .venv/bin/mingo ]; then
        say "python packages up to date (pyproject.toml unchanged)"
    else
        say "installing the project and its dev dependencies into .venv"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
        echo "$want" >"$stamp"
    fi
    export VIRTUAL_ENV="$repo/.venv"
    export PATH="$repo/.venv/bin:$PATH"
}

run_demo() {
    ensure_venv
    exec mingo demo "$@"
}

stop_servers() {
    say "stopping the servers"
    mingo infra down || echo "run.sh: 'mingo infra down' failed" >&2
}

run_test() {
    say "system packages"
    bash infra/install-system-deps.sh
    ensure_venv

    trap stop_servers EXIT
    # Turn signals into a normal exit so that the EXIT trap runs once.
    trap 'exit 130' INT
    trap 'exit 143' TERM

    say "starting the servers"
    mingo infra up
    eval "$(mingo infra env)"

    local lint_failed=0
    say "ruff check"
    ruff check . || lint_failed=1
    say "ruff format --check"
    ruff format --check . || lint_failed=1
    say "mypy"
    mypy || lint_failed=1
    say "known vulnerabilities of requirements.lock (offline safety-db; see docs/security.md)"
    python -m infra.vulncheck || lint_failed=1

    say "pytest $*"
    local status=0
    pytest "$@" || status=$?
    if [ "$status" -eq 5 ]; then
        echo "run.sh: pytest collected no tests; that is a failure" >&2
    fi
    if [ "$status" -eq 0 ] && [ "$lint_failed" -ne 0 ]; then
        echo "run.sh: tests passed but ruff, mypy or the vulnerability check failed (see above)" >&2
        status=1
    fi
    exit "$status"
}

run_audit() {
    ensure_venv
    say "pip-audit of requirements.lock (regenerate it with: python -m infra.lock > requirements.lock)"
    # --strict: a pin that cannot be looked up is a failure, never a silent pass.
    exec pip-audit --strict --no-deps --disable-pip --progress-spinner off -r requirements.lock "$@"
}

[ $# -ge 1 ] || usage
mode=$1
shift
case "$mode" in
demo) run_demo "$@" ;;
test) run_test "$@" ;;
audit) run_audit "$@" ;;
*) usage ;;
esac
