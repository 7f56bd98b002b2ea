"""Re-check mutants of code that runs when the package is imported, each in a fresh process.

mutmut forks its test runs from a server that imported keras_cnn before any mutant was chosen, so a mutant of
code that runs at import (the weight-set and model registrations, `Card.__post_init__`, `registry.variant`)
is never active in them and is reported as surviving. This runs `tests` in a new interpreter per mutant with
MUTANT_UNDER_TEST set, so the import itself takes the mutant. Run it after `mutmut run`, from the project root:

    python tests/mutation_fresh.py keras_cnn.registry.x_variant -- tests/test_registry.py -k "not deepest"

The names before `--` are mutant name prefixes; what follows goes to pytest. A mutant counts as killed when
pytest fails (a test fails or the import breaks), as surviving when it passes.
"""

from __future__ import annotations

import os
import subprocess
import sys


def not_killed(prefixes: list[str]) -> list[str]:
    """The mutants under `prefixes` (or named in full) that mutmut did not kill (survived, no tests, not checked)."""
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    names = []
    for line in listing.splitlines():
        name, _, status = line.strip().partition(": ")
        chosen = any(name == p or ("__mutmut_" not in p and name.startswith(p)) for p in prefixes)
        if chosen and status in ("survived", "no tests", "not checked"):
            names.append(name)
    return names


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") in (0, len(argv) - 1) or "-h" in argv or "--help" in argv:
        sys.exit(__doc__)
    prefixes, tests = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    if not os.path.isdir("mutants"):
        sys.exit("No mutants/ folder here: run `mutmut run` from the project root first.")
    names = not_killed(prefixes)
    if not names:
        sys.exit(f"No unkilled mutant matches {prefixes} in `mutmut results --all true`.")
    survivors = 0
    for name in names:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *tests],
            cwd="mutants",
            env={**os.environ, "MUTANT_UNDER_TEST": name},
            capture_output=True,
            text=True,
        )
        if run.returncode not in (0, 1, 2):  # 2: the import or collection broke, which the mutant may cause
            sys.exit(f"pytest could not run {tests} (exit {run.returncode}):\n{run.stdout[-2000:]}")
        print(f"{name}: {'killed' if run.returncode else 'survived'}", flush=True)
        survivors += run.returncode == 0
    print(f"{len(names) - survivors} of {len(names)} killed in a fresh process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
