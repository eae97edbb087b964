"""Small checks shared by the tests."""


def quiet(stderr: str) -> bool:
    """Nothing from memchat on stderr (a library's warning is not memchat's to answer for)."""
    return "memchat:" not in stderr and "Traceback" not in stderr
