"""`python -m rag.bot` (or the `rag-bot` command): the Telegram bot, token in TELEGRAM_BOT_TOKEN."""

import sys

from rag.bot.app import main

if __name__ == "__main__":
    sys.exit(main())
