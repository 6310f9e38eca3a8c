"""`python -m shared.cli_main` runs the `hai` command (for tests that start processes)."""

from shared.cli import main

if __name__ == "__main__":
    main()
