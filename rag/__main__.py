"""`python -m rag` entry point."""

import sys

from rag.cli import main

sys.exit(main())
