from rag.answer import Answer, Citation
from rag.render import sources, terminal

CITATION = Citation(1, "Last year, the administration revoked the visa.", 10, 58, 9, 0.9, "doc.txt")


def test_terminal_shows_the_answer_then_its_sources():
    lines = terminal(Answer("q", "Last year, the administration revoked the visa.", False, [CITATION])).splitlines()
    assert lines[0] == "Last year, the administration revoked the visa. [1]"
    assert lines[2] == "Sources:"
    assert lines[3] == "[1] “Last year, the administration revoked the visa.” (doc.txt, paragraph 9, chars 10-58)"


def test_abstention_does_not_present_passages_as_the_answer():
    text = terminal(Answer("q", "The article doesn't say.", True, [CITATION]))
    assert text.startswith("The article doesn't say.\n")
    assert "Closest passages (I am not confident they answer the question):" in text
    assert "[1]" not in text.splitlines()[0]
    assert terminal(Answer("q", "The article doesn't say.", True)) == "The article doesn't say."


def test_sources_quote_passages_in_full():
    long = Citation(2, "word " * 60, 0, 300, 4, 0.5, "doc.txt")
    text = sources(Answer("q", "a", False, [CITATION, long]))
    assert "[2] doc.txt, paragraph 4, chars 0-300" in text
    assert text.count("word") == 60
    assert sources(None) == "No sources yet: ask a question first."


def test_sources_after_an_abstention_say_nothing_was_quoted():
    text = sources(Answer("q", "doc.txt doesn't say.", True, [CITATION]))
    assert (
        text.startswith("My last answer quoted nothing") and "Last year, the administration revoked the visa." in text
    )
    assert sources(Answer("q", "doc.txt doesn't say.", True)) == "My last answer quoted nothing from the document."


def test_generated_answers_keep_their_own_markers():
    answer = Answer("q", "The administration revoked it [1].", False, [CITATION], mode="generative")
    assert terminal(answer).splitlines()[0] == "The administration revoked it [1]."


def test_citations_show_the_page_and_section_where_known():
    pdf = Citation(1, "The keeper counted ships.", 5, 30, 2, 0.9, "report.pdf", page=4)
    docx = Citation(2, "Keep a hammer.", 0, 14, 3, 0.5, "handbook.md", section="Tools")
    text = terminal(Answer("q", "The keeper counted ships.", False, [pdf, docx]))
    assert "(report.pdf, p. 4, paragraph 2, chars 5-30)" in text
    assert "(handbook.md, § Tools, paragraph 3, chars 0-14)" in text
    assert "(doc.txt, paragraph 9, chars 10-58)" in terminal(Answer("q", "x", False, [CITATION]))


def test_short_answer_is_bold_on_a_terminal_and_plain_when_piped():
    from rag.answer import ShortAnswer

    text = "Last year, the administration revoked the visa."
    answer = Answer(
        "q", text, False, [CITATION], parts=[(text, 1)], short_answer=ShortAnswer("Last year", 10, 19, 0, 0)
    )
    assert terminal(answer, bold=True).splitlines()[0] == f"\033[1mLast year\033[0m{text[9:]} [1]"
    assert terminal(answer).splitlines()[0] == f"{text} [1]"
    assert answer.to_json()["short_answer"] == {"text": "Last year", "start": 10, "end": 19}
    assert Answer.from_record(answer.to_record()) == answer


def test_short_answer_is_bold_in_telegram_html_and_escaped():
    from rag.answer import ShortAnswer
    from rag.bot.render import telegram_html

    text = "Costs rose to <$41,000> in 2019."
    answer = Answer("q", text, False, [CITATION], parts=[(text, 1)], short_answer=ShortAnswer("$41,000", 5, 12, 0, 15))
    assert telegram_html(answer)[0].startswith("Costs rose to &lt;<b>$41,000</b>&gt; in 2019. [1]")
