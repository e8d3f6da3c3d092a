"""File names as one printable line, losslessly, and back."""
import os
import re
import unicodedata
from typing import Union

#: Unicode categories shown escaped: control, format, surrogate, private use, unassigned,
#: line and paragraph separators.
_HIDDEN = frozenset({'Cc', 'Cf', 'Cs', 'Co', 'Cn', 'Zl', 'Zp'})

_ESCAPE = re.compile(r'\\(\\|x[0-9a-fA-F]{2})')


class BadEscapeError(ValueError):
    """A line is not something :func:`escape` could have written."""


def _visible(ch: str) -> bool:
    return unicodedata.category(ch) not in _HIDDEN


def escape(name: Union[str, bytes, os.PathLike]) -> str:
    """``name`` as one printable line; lossless (:func:`unescape` gives it back).

    The name's bytes (``os.fsencode``) are decoded as UTF-8; printable characters stay, a
    backslash becomes ``\\\\``, and every byte of a non-printable character (controls,
    format characters such as U+202E, line/paragraph separators) or of invalid UTF-8 becomes
    ``\\xNN``. The result holds no control character, so a terminal shows it as text.
    """
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    out = []
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b < 0x80:
            ch = chr(b)
            if ch == '\\':
                out.append('\\\\')
            elif b < 0x20 or b == 0x7f:
                out.append('\\x%02x' % b)
            else:
                out.append(ch)
            i += 1
            continue
        # The length a UTF-8 lead byte announces; a bad lead byte or sequence is escaped
        # byte by byte.
        size = 2 if 0xc2 <= b <= 0xdf else 3 if 0xe0 <= b <= 0xef else 4 if 0xf0 <= b <= 0xf4 else 0
        chunk = raw[i:i + size] if size else b''
        try:
            ch = chunk.decode('utf-8') if size and len(chunk) == size else ''
        except UnicodeDecodeError:
            ch = ''
        if ch and _visible(ch):
            out.append(ch)
            i += size
        elif ch:
            out.extend('\\x%02x' % c for c in chunk)
            i += size
        else:
            out.append('\\x%02x' % b)
            i += 1
    return ''.join(out)


_CONTROL = re.compile('[\x00-\x1f\x7f-\x9f]')  # the Cc category


def unescape_bytes(line: str) -> bytes:
    """The bytes of the name :func:`escape` turned into ``line``; :class:`BadEscapeError`
    for a lone backslash or a control character (never written by :func:`escape`)."""
    parts = []
    pos = 0
    for m in _ESCAPE.finditer(line):
        parts.append(_plain(line[pos:m.start()]))
        tok = m.group(1)
        parts.append(b'\\' if tok == '\\' else bytes([int(tok[1:], 16)]))
        pos = m.end()
    parts.append(_plain(line[pos:]))
    return b''.join(parts)


def _plain(text: str) -> bytes:
    if '\\' in text:
        raise BadEscapeError('a backslash not followed by \\ or xNN in %r' % (text[:80],))
    # Only control characters are refused: which characters are assigned differs between
    # Python versions, so a name written by a newer one must still read back.
    if _CONTROL.search(text):
        raise BadEscapeError('an unescaped control character in %r' % (text[:80],))
    try:
        return text.encode('utf-8')
    except UnicodeEncodeError:  # a lone surrogate: not printable UTF-8
        raise BadEscapeError('a character that is not UTF-8 in %r' % (text[:80],)) from None


def unescape(line: str) -> str:
    """The name :func:`escape` turned into ``line``, as ``os.fsdecode`` gives it."""
    if '\\' not in line and line.isprintable():
        return line  # the common case, decided in C: nothing escaped, nothing to refuse
    return os.fsdecode(unescape_bytes(line))
