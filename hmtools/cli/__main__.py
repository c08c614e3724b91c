"""``python -m hmtools.cli`` (what torchrun runs: ``torchrun ... -m hmtools.cli train ...``)."""

from hmtools.cli import main

if __name__ == "__main__":
    main()
