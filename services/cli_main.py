"""`python -m services.cli_main` runs the `hai` command (for tests that start processes)."""

from services.cli import main

if __name__ == "__main__":
    main()
