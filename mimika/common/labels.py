"""Emotion label names and the codes and spellings that datasets use for them."""

from __future__ import annotations

from .errors import MimikaError

#: CK+ emotion codes, as in the `Emotion/*_emotion.txt` files.
CKPLUS_CODES: dict[int, str] = {
    0: "neutral",
    1: "anger",
    2: "contempt",
    3: "disgust",
    4: "fear",
    5: "happiness",
    6: "sadness",
    7: "surprise",
}

#: The seven emotions of the original design (CK+ codes 1..7), in code order.
CKPLUS_EMOTIONS: list[str] = [CKPLUS_CODES[c] for c in range(1, 8)]

#: Spellings found in class-folder datasets, mapped to our canonical names.
SYNONYMS: dict[str, str] = {
    "neutral": "neutral", "neutrality": "neutral", "calm": "neutral",
    "anger": "anger", "angry": "anger", "mad": "anger",
    "contempt": "contempt", "contemptuous": "contempt",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness", "smile": "happiness",
    "sadness": "sadness", "sad": "sadness",
    "surprise": "surprise", "surprised": "surprise",
}


def in_code_order(names) -> list[str]:
    """Label names sorted by CK+ code (neutral, anger, contempt, ... surprise): the one class order
    of every dataset and model; names that are not CK+ emotions go last, in their given order."""
    rank = {n: c for c, n in CKPLUS_CODES.items()}
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda n: rank.get(n, len(rank)))


def canonical_label(name: str) -> str | None:
    """Our name for a dataset's class name or CK+ code ("happy", "5" -> "happiness"); None if unknown."""
    key = name.strip().lower()
    if key.isdigit():
        return CKPLUS_CODES.get(int(key))
    return SYNONYMS.get(key)


def label_of(value, where: str = "") -> str:
    """Our name for a label given as a CK+ code (5, 5.0, "5") or a name or synonym ("happy")."""
    if isinstance(value, str) and not value.strip().isdigit():
        name = canonical_label(value)
        if name is None:
            raise MimikaError(f"{where}: {value!r} is neither a CK+ emotion code (0..7) nor an emotion name "
                              f"(known: {', '.join(CKPLUS_CODES.values())} and synonyms such as happy, angry, sad)")
        return name
    try:
        return code_to_label(value if not isinstance(value, str) else int(value), where)
    except (TypeError, ValueError, OverflowError):
        raise MimikaError(f"{where}: {value!r} is not a CK+ emotion code (0..7) or an emotion name") from None


def code_to_label(code: int | float, where: str = "") -> str:
    """The label name of a CK+ code, or a MimikaError naming `where` for anything else."""
    try:
        ok = float(code) == int(code) and int(code) in CKPLUS_CODES
    except (TypeError, ValueError, OverflowError):  # NaN, infinity, junk
        ok = False
    if not ok:
        raise MimikaError(f"{where}: {code!r} is not a CK+ emotion code (0..7)")
    return CKPLUS_CODES[int(code)]
