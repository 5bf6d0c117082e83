"""`python -m opskit`: the opskit command."""

from opskit.faces.cli import main

if __name__ == "__main__":
    main()
