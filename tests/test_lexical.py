from rag.lexical import TermWeights, content_terms, has_anaphor, words


def test_words_drop_possessives_and_split_hyphens():
    assert words("Bensouda's Hague-based court") == ["bensouda", "hague", "based", "court"]


def test_content_terms_drop_question_words_and_stem():
    assert content_terms("Who revoked the visas?") == ["revok", "visa"]


def test_anaphors():
    assert has_anaphor("Where was she born?")
    assert not has_anaphor("Where was Fatou Bensouda born?")


def test_coverage_weights_rare_terms_higher():
    weights = TermWeights(set(content_terms(p)) for p in ["the court ruled", "the court met", "a visa was revoked"])
    assert weights.idf("visa") > weights.idf("court")
    assert weights.coverage(["visa", "court"], {"visa"}) > weights.coverage(["visa", "court"], {"court"})
    assert weights.coverage([], {"visa"}) == 0.0


def test_each_thread_gets_its_own_stemmer():
    import threading

    from rag.lexical import thread_stemmer

    mine = thread_stemmer()
    assert thread_stemmer() is mine
    seen = []
    thread = threading.Thread(target=lambda: seen.append(thread_stemmer()))
    thread.start()
    thread.join()
    assert seen[0] is not mine and seen[0].stemWord("soldiers") == mine.stemWord("soldiers") == "soldier"
