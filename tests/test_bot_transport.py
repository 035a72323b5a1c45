import logging

from rag.bot.transport import RedactToken

TOKEN = "123:secret-token"


def test_token_is_redacted_from_messages_arguments_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "calling %s", (f"https://api/bot{TOKEN}/getMe",), None)
    try:
        raise RuntimeError(f"failed at /bot{TOKEN}/sendMessage")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactToken(TOKEN).filter(record)
    text = logging.Formatter().format(record)
    assert TOKEN not in text
    assert "calling https://api/bot[token]/getMe" in text and "/bot[token]/sendMessage" in text
