"""The one exception of the data package: ``DataError``, a problem with a trajectory file.

Every reader raises ``DataError`` with a message of the form ``"<file> (key '<key>'): <what is wrong>"`` (the key part
only where one HDF5 key is involved), so that a failure names the file and the place in it. ``file_error`` builds that
message; readers of new layouts use it (through ``Layout.error``) instead of formatting their own.
"""

from __future__ import annotations

__all__ = ["DataError", "file_error"]


class DataError(ValueError):
    """A trajectory file is missing, unreadable, of unknown layout, inconsistent, or holds non-finite values.

    The message always names the file and, where one is involved, the HDF5 key.

    Example:
        >>> from upt_keras.data import open_trajectories
        >>> try:
        ...     open_trajectories("no/such/file.h5")
        ... except DataError as err:
        ...     print(err)
        no/such/file.h5: file not found
    """


def file_error(path, message, key=None):
    """A ``DataError`` naming ``path`` and, if given, the HDF5 ``key``.

    Args:
        path: the file.
        message: what is wrong.
        key: the HDF5 key involved, or ``None``.

    Returns:
        the ``DataError`` (to be raised by the caller).

    Example:
        >>> print(file_error("u.h5", "missing key", "t-coordinate"))
        u.h5 (key 't-coordinate'): missing key
    """
    where = f" (key '{key}')" if key is not None else ""
    return DataError(f"{path}{where}: {message}")
