"""One error type for everything the user can get wrong, so the CLI can print it as one line."""


class MimikaError(Exception):
    """Bad input (file, image, model, dataset): the message names the file and the problem."""
