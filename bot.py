"""Telegram bot entry point: `python bot.py` (token in TELEGRAM_BOT_TOKEN). See rag/bot/."""

import sys

from rag.bot.app import main

if __name__ == "__main__":
    sys.exit(main())
