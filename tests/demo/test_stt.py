"""gateway.demo.stt without a running pool: configuration refusals and phrase handling.

(Decoding itself is exercised over HTTP in test_backend*.py.)
"""

from __future__ import annotations

import pytest

from gateway.demo.stt import Recogniser, Span, normalise_phrase, phrase_grammar
from gateway.errors import ConfigError, RecognizerFailed


def test_phrases_are_normalised_to_the_recognisers_spelling() -> None:
    assert normalise_phrase("  Don't STOP -- believing!\n") == "don't stop believing"
    assert normalise_phrase("...") == ""


def test_the_grammar_has_one_alternative_per_phrase() -> None:
    assert phrase_grammar(["hello world", "good bye"]) == (
        "#JSGF V1.0;\ngrammar phrases;\npublic <utterance> = ( hello world ) | ( good bye );\n"
    )


def test_phrase_mode_and_its_phrases() -> None:
    recogniser = Recogniser(["Hello, world!", "", "  "])
    assert (recogniser.mode, recogniser.phrases) == ("phrase-list", ("hello world",))
    assert Recogniser().mode == "open-vocabulary"


@pytest.mark.parametrize(
    ("phrases", "workers", "message"),
    [(["!!", ""], 1, "phrase list is empty"), (None, 0, "at least 1")],
)
def test_bad_configuration_is_refused(
    phrases: list[str] | None, workers: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Recogniser(phrases, workers)


@pytest.mark.asyncio
async def test_a_recogniser_that_is_not_running_fails_typed() -> None:
    with pytest.raises(RecognizerFailed, match="not running"):
        await Recogniser().recognise(Span(0.0, bytes(3200)))
    await Recogniser().close()  # closing one that never started is a no-op
