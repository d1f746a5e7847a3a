"""One error type for everything the user can get wrong, so the CLI can print it as one line."""


NEEDS_TORCH = "needs PyTorch, which this install leaves out (prediction does not need it): pip install 'mimika[train]'"


class MimikaError(Exception):
    """Bad input (file, image, model, dataset): the message names the file and the problem."""


def first_line(e: BaseException) -> str:
    """The first line of a library's exception message, bounded: what a one-line error quotes of it."""
    return (str(e).strip().splitlines() or [""])[0][:200]
