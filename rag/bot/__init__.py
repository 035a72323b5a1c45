"""The Telegram front end: per-chat state (`state`), handlers (`handlers`), transport (`transport`)
and the Application wiring (`app`). `bot.py` at the top level runs `app.main`."""
