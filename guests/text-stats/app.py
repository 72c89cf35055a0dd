"""The `text-stats` tool: word, sentence and syllable counts and the Flesch
reading ease of an English text. Written in Python, built with componentize-py."""

import re

from wit_world import exports
from wit_world.exports.stats import Report

WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")
SENTENCE_END = re.compile(r"[.!?]+")
VOWELS = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """Vowel groups, minus a silent final e; at least one per word."""
    w = word.lower()
    if w.isdigit():
        return 1
    count = len(VOWELS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee")) and count > 1:
        count -= 1
    return max(count, 1)


class Stats(exports.Stats):
    def analyze(self, text: str) -> Report:
        words = WORD.findall(text)
        pieces = [p for p in SENTENCE_END.split(text) if WORD.search(p)]
        n_words, n_sentences = len(words), len(pieces)
        n_syllables = sum(syllables(w) for w in words)
        characters = sum(1 for c in text if not c.isspace())
        if n_words == 0:
            return Report(0, 0, 0, characters, 0.0, 0.0)
        per_sentence = n_words / n_sentences
        ease = 206.835 - 1.015 * per_sentence - 84.6 * (n_syllables / n_words)
        return Report(
            words=n_words,
            sentences=n_sentences,
            syllables=n_syllables,
            characters=characters,
            words_per_sentence=round(per_sentence, 2),
            flesch_reading_ease=round(ease, 1),
        )
