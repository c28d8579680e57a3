"""`python -m teamster`: the same as the `teamster` command."""

from teamster.cli import main

if __name__ == "__main__":
    main()
