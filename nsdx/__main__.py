"""`python -m nsdx` runs the `nsdx` command (the same entry point as the console script)."""

from nsdx.cli import main

if __name__ == "__main__":
    main()
