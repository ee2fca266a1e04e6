"""Every string a person reads comes from here, by message id.

Catalogues are plain dicts (firmware.ui.messages_en, firmware.ui.messages_zh) so that a
MicroPython build can freeze them. A missing translation falls back to English, and a
missing id shows the id itself, so a gap is visible on screen instead of crashing.
"""
from firmware.ui import messages_en, messages_zh

CATALOGUES = {"en": messages_en.MESSAGES, "zh": messages_zh.MESSAGES}
LANGUAGES = ("en", "zh")
LANGUAGE_NAMES = {"en": "English", "zh": "中文"}


class Translator:
    def __init__(self, lang="en"):
        self.lang = lang if lang in CATALOGUES else "en"

    def set_language(self, lang):
        if lang not in CATALOGUES:
            raise ValueError("unknown language %r" % lang)
        self.lang = lang

    def __call__(self, msg_id, **params):
        text = CATALOGUES[self.lang].get(msg_id)
        if text is None:
            text = messages_en.MESSAGES.get(msg_id, msg_id)
        if params:
            try:
                return text.format(**params)
            except (KeyError, IndexError, ValueError):
                return text
        return text


def missing(lang):
    """Ids that English has and lang lacks: a test keeps this empty."""
    other = CATALOGUES[lang]
    return sorted(k for k in messages_en.MESSAGES if k not in other)
