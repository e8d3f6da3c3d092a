"""Checking a pickle's shape (depth, size, declared storages) before anything unpickles it
(no torch, no jina).
"""
import pickletools
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

#: Deeper than any checkpoint or vocabulary VSE++ wrote (about 8 levels), far below
#: where hashing, freeing or walking the result could exhaust a stack.
MAX_DEPTH = 64


class PickleRefusedError(ValueError):
    """The pickle was refused before unpickling; ``reason`` says why (no file name: the
    caller adds it)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PickleTooDeepError(PickleRefusedError):
    """Nested deeper than allowed (or containing itself)."""


class PickleTooLargeError(PickleRefusedError):
    """More opcodes, bytes or work than allowed."""


class MalformedPickleError(PickleRefusedError):
    """Not a well-formed pickle: truncated, an unknown opcode, an argument past the end."""


class _Node:
    """A container or constructed object on the simulated stack (atoms are :class:`_Atom`)."""

    __slots__ = ('depth', 'parents', 'items')

    def __init__(self, depth: int = 1, items=None):
        self.depth = depth
        self.parents: List['_Node'] = []
        self.items = items  # the atom values of a small tuple, for persistent ids


class _Atom:
    __slots__ = ('value',)

    def __init__(self, value=None):
        self.value = value


class _Global:
    __slots__ = ('module', 'name')

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __repr__(self):
        return '%s.%s' % (self.module, self.name)


_UNKNOWN = object()  # an atom whose value the scan does not keep (long text, floats)


@dataclass
class PickleScan:
    """What :func:`scan_pickle` found: where the pickle ends (offset just past STOP), how
    many opcodes it ran, its deepest nesting, the globals it names, and each persistent
    id as a tuple of values (``None`` for an id whose parts are not plain small atoms;
    strings as ``str``, ints as ``int``, globals as ``'module.name'``)."""

    end: int
    ops: int
    depth: int
    globals: List[str] = field(default_factory=list)
    persistent_ids: List[Optional[tuple]] = field(default_factory=list)


_SMALL = 256  # longest string kept as a value


def scan_pickle(data, start: int = 0, max_depth: int = MAX_DEPTH, max_ops: int = 1_000_000,
                max_bytes: Optional[int] = None, continues: bool = False) -> PickleScan:
    """Walk the pickle that starts at ``data[start]`` (bytes, bytearray, memoryview or
    mmap) up to its STOP opcode, without unpickling it.

    Raises :class:`PickleTooDeepError` when objects nest deeper than ``max_depth`` or
    contain themselves, :class:`PickleTooLargeError` when it runs more than ``max_ops``
    opcodes or spans more than ``max_bytes`` bytes, :class:`MalformedPickleError` when it
    is not a well-formed pickle. ``continues`` says ``data`` is only the head of a longer
    file: running off its end is then :class:`PickleTooLargeError`, not a truncation.
    Memory is linear in the opcodes walked; nothing recurses.

    Refusing unknown globals keeps a hostile pickle from running code, but plain data can
    still kill the loader: a tuple nested 300,000 deep overflows the C stack when hashed or
    freed, a deep list raises RecursionError when walked, a few bytes can declare gigabytes
    of storage. Depth is tracked as the unpickler would build the objects: a container is
    one above its deepest part, and adding to a container already inside others (through
    the memo) raises their depths too, so late additions cannot hide depth. Persistent ids
    (torch's storage declarations) are reported so callers can check sizes first.
    """
    buf = memoryview(data).cast('B') if not isinstance(data, (bytes, bytearray)) else data
    end = len(buf) if max_bytes is None else min(len(buf), start + max_bytes)
    pos = start
    stack: list = []
    marks: List[int] = []
    memo: dict = {}
    ops = 0
    deepest = 0
    budget = [10 * max_ops + 100_000]  # propagation steps, against crafted memo graphs
    scan = PickleScan(end=-1, ops=0, depth=0)

    def refuse_deep():
        raise PickleTooDeepError('its objects nest deeper than %d levels (or contain themselves)'
                                 % max_depth)

    def raise_depth(node: _Node, depth: int):
        nonlocal deepest
        work = [(node, depth)]
        while work:
            n, d = work.pop()
            if d <= n.depth:
                continue
            if d > max_depth:
                refuse_deep()
            n.depth = d
            deepest = max(deepest, d)
            budget[0] -= 1 + len(n.parents)
            if budget[0] < 0:
                raise PickleTooLargeError('its object graph is too tangled to check')
            work.extend((p, d + 1) for p in n.parents)

    def link(parent, child):
        if isinstance(parent, _Node) and isinstance(child, _Node):
            child.parents.append(parent)
            raise_depth(parent, child.depth + 1)

    def new_node(children, items=None) -> _Node:
        node = _Node(1, items)
        for c in children:
            link(node, c)
        return node

    def pop():
        if not stack or (marks and len(stack) <= marks[-1]):
            raise MalformedPickleError('an opcode pops from an empty stack')
        return stack.pop()

    def pop_mark() -> list:
        if not marks:
            raise MalformedPickleError('an opcode needs a MARK that is not there')
        m = marks.pop()
        items = stack[m:]
        del stack[m:]
        return items

    def top():
        if not stack or (marks and len(stack) <= marks[-1]):
            raise MalformedPickleError('an opcode needs an object on an empty stack')
        return stack[-1]

    def take(n: int) -> bytes:
        nonlocal pos
        if n >= 0 and pos + n > end and (continues or end < len(buf)):
            raise PickleTooLargeError('an argument at byte %d claims %d bytes, past the first %d '
                                      'bytes a pickle may take' % (pos, n, end - start))
        if n < 0 or pos + n > end:
            raise MalformedPickleError('an argument at byte %d claims %d bytes; %d remain'
                                       % (pos, n, max(0, end - pos)))
        out = bytes(buf[pos:pos + n])
        pos += n
        return out

    def line(limit: int = 4096) -> bytes:
        nonlocal pos
        stop = min(end, pos + limit + 1)
        i = pos
        while i < stop and buf[i] != 10:
            i += 1
        if i >= stop:
            raise MalformedPickleError('a text argument at byte %d has no end within %d bytes'
                                       % (pos, limit))
        out = bytes(buf[pos:i])
        pos = i + 1
        return out

    def uint(n: int, signed: bool = False) -> int:
        return int.from_bytes(take(n), 'little', signed=signed)

    def read_arg(desc):
        """The argument's value for the kinds whose value matters, else _UNKNOWN."""
        name, n = desc.name, desc.n
        if n >= 0:
            if name in ('uint1', 'uint2', 'uint4', 'uint8'):
                return uint(n)
            if name == 'int4':
                return uint(4, signed=True)
            take(n)
            return _UNKNOWN
        if n == pickletools.UP_TO_NEWLINE:
            if name == 'stringnl_noescape_pair':
                return line().decode('latin-1'), line().decode('latin-1')
            text = line()
            if name in ('decimalnl_short', 'decimalnl_long'):
                digits = text.rstrip(b'L')
                if len(digits) > 40:
                    return _UNKNOWN
                if digits in (b'00', b'01'):
                    return digits == b'01'
                try:
                    return int(digits)
                except ValueError:
                    raise MalformedPickleError('%r is not an integer' % text[:40]) from None
            if name in ('stringnl', 'unicodestringnl', 'stringnl_noescape'):
                return _text(text.strip(b"'\"") if name == 'stringnl' else text)
            return _UNKNOWN
        if n == pickletools.TAKEN_FROM_ARGUMENT1:
            length = uint(1)
        elif n == pickletools.TAKEN_FROM_ARGUMENT4:
            length = uint(4, signed=True)
        elif n == pickletools.TAKEN_FROM_ARGUMENT4U:
            length = uint(4)
        elif n == pickletools.TAKEN_FROM_ARGUMENT8U:
            length = uint(8)
        else:  # pragma: no cover - every opcode of pickle 5 is handled above
            raise MalformedPickleError('unknown argument kind %s' % name)
        payload = take(length)
        if name in ('long1', 'long4'):
            return int.from_bytes(payload, 'little', signed=True) if length <= 16 else _UNKNOWN
        if length > _SMALL:
            return _UNKNOWN
        return _text(payload)

    while True:
        if pos >= end:
            if continues or end < len(buf):
                raise PickleTooLargeError('it runs past its first %d bytes without ending'
                                          % (end - start))
            raise MalformedPickleError('it ends at byte %d without a STOP opcode' % pos)
        code = buf[pos]
        op = pickletools.code2op.get(chr(code))
        if op is None:
            raise MalformedPickleError('unknown opcode 0x%02x at byte %d' % (code, pos))
        pos += 1
        ops += 1
        if ops > max_ops:
            raise PickleTooLargeError('it runs more than %d opcodes' % max_ops)
        arg = read_arg(op.arg) if op.arg is not None else None
        name = op.name

        if name == 'STOP':
            pop()
            break
        elif name in ('PROTO', 'FRAME', 'READONLY_BUFFER'):
            pass
        elif name == 'MARK':
            marks.append(len(stack))
        elif name in ('EMPTY_DICT', 'EMPTY_LIST', 'EMPTY_SET'):
            stack.append(_Node())
        elif name == 'EMPTY_TUPLE':
            stack.append(_Node(1, ()))
        elif name in ('TUPLE1', 'TUPLE2', 'TUPLE3', 'TUPLE'):
            items = pop_mark() if name == 'TUPLE' else [pop() for _ in range(int(name[-1]))][::-1]
            values = tuple(_value(i) for i in items) if len(items) <= 8 else None
            stack.append(new_node(items, values if values is None or _UNKNOWN not in values else None))
        elif name in ('LIST', 'DICT', 'FROZENSET'):
            stack.append(new_node(pop_mark()))
        elif name == 'APPEND':
            item = pop()
            link(top(), item)
        elif name == 'SETITEM':
            value, key = pop(), pop()
            link(top(), key)
            link(top(), value)
        elif name in ('APPENDS', 'SETITEMS', 'ADDITEMS'):
            items = pop_mark()
            target = top()
            for item in items:
                link(target, item)
        elif name == 'BUILD':
            state = pop()
            link(top(), state)
        elif name == 'REDUCE':
            args, func = pop(), pop()
            stack.append(new_node([func, args]))
        elif name == 'NEWOBJ':
            args, cls = pop(), pop()
            stack.append(new_node([cls, args]))
        elif name == 'NEWOBJ_EX':
            kwargs, args, cls = pop(), pop(), pop()
            stack.append(new_node([cls, args, kwargs]))
        elif name == 'OBJ':
            stack.append(new_node(pop_mark()))
        elif name == 'INST':
            scan.globals.append('%s.%s' % arg)
            stack.append(new_node(pop_mark()))
        elif name == 'GLOBAL':
            g = _Global(*arg)
            scan.globals.append(repr(g))
            stack.append(_Atom(g))
        elif name == 'STACK_GLOBAL':
            gname, module = _value(pop()), _value(pop())
            g = _Global(str(module), str(gname))
            scan.globals.append(repr(g))
            stack.append(_Atom(g))
        elif name == 'PERSID':
            scan.persistent_ids.append((arg,) if arg is not _UNKNOWN else None)
            stack.append(_Node(1))
        elif name == 'BINPERSID':
            pid = pop()
            scan.persistent_ids.append(pid.items if isinstance(pid, _Node) else None)
            stack.append(new_node([pid]))
        elif name == 'POP':
            if stack and not (marks and len(stack) <= marks[-1]):
                stack.pop()
            elif marks:
                pop_mark()
            else:
                raise MalformedPickleError('POP on an empty stack')
        elif name == 'POP_MARK':
            pop_mark()
        elif name == 'DUP':
            stack.append(top())
        elif name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
            memo[arg] = top()
        elif name == 'MEMOIZE':
            memo[len(memo)] = top()
        elif name in ('GET', 'BINGET', 'LONG_BINGET'):
            if arg not in memo:
                raise MalformedPickleError('memo entry %r is read before it is written' % (arg,))
            stack.append(memo[arg])
        elif name in ('NONE', 'NEWTRUE', 'NEWFALSE'):
            stack.append(_Atom({'NONE': None, 'NEWTRUE': True, 'NEWFALSE': False}[name]))
        elif name == 'NEXT_BUFFER':
            stack.append(_Atom(_UNKNOWN))
        else:  # every other opcode pushes one atom read from its argument
            stack.append(_Atom(arg))
    scan.end, scan.ops, scan.depth = pos, ops, deepest
    return scan


def _text(raw: bytes):
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        return raw.decode('latin-1')


def _value(item):
    if isinstance(item, _Atom):
        v = item.value
        return repr(v) if isinstance(v, _Global) else v
    return _UNKNOWN


def scan_pickles(data, count: int, start: int = 0, **limits) -> Tuple[List[PickleScan], int]:
    """:func:`scan_pickle` on ``count`` pickles one after another from ``start`` (torch's
    legacy format writes five in a row); returns the scans and the offset after the last."""
    scans = []
    for _ in range(count):
        s = scan_pickle(data, start, **limits)
        scans.append(s)
        start = s.end
    return scans, start
