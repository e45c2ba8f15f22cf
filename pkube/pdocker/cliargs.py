"""pdocker's command-line parsing: argparse's results without importing argparse on the common
path.

`Parser` takes the calls one makes on an argparse.ArgumentParser (add_argument,
add_subparsers → add_parser, set_defaults) and records them. `Parser.parse_args(argv)` parses
the command line itself with argparse's own algorithm (the same classification of each word
as option or argument, the same greedy matching of nargs, the same defaults and type
conversions) and returns the Namespace argparse would. For `-h`/`--help`, for any error, and
for any feature it does not implement, it replays the recorded calls into a real argparse
parser and lets argparse parse, so help texts and error messages are argparse's own (raised
as UsageError, as pdocker always did).

Why: `import argparse` imports re, enum, gettext and locale (about 10 ms), and building
pdocker's parser costs 2-3 ms more, of a `pdocker run` that should take runc's 30 ms in all.
tests/unit/test_cliargs.py proves that both engines agree over pdocker's real parser.

Implemented on the lean path: actions store (with `type=`), store_true, append and help;
nargs None, '?', '*', '+' and REMAINDER for positionals (None for options); one level of
subparsers; `--opt=value`, `--opt value`, `-xVALUE`, `-x VALUE`, `-x=VALUE`, combined short
flags, unambiguous abbreviations of long options, negative numbers, `--`. The algorithm is
argparse's as of Python 3.11 (its handling of `--` changed in later versions); the unit
tests compare both engines on the running interpreter, so a difference shows up there.
"""

from __future__ import annotations

import sys

REMAINDER = "..."        # argparse.REMAINDER: all the remaining words, options included
_PARSER = "A..."         # argparse.PARSER: a verb and the words that follow it
_SUPPRESS = "==SUPPRESS=="
_MANY = 1 << 30          # an unbounded repeat in a nargs pattern

_PARSER_KWARGS = frozenset({"prog", "description", "add_help", "epilog", "usage"})
_ARGUMENT_KWARGS = frozenset({"action", "dest", "default", "type", "nargs", "help", "metavar"})
_SUBPARSERS_KWARGS = frozenset({"dest", "required", "help", "metavar", "title", "description"})
_ACTIONS = frozenset({"store", "store_true", "append", "help"})
_POSITIONAL_NARGS = (None, "?", "*", "+", REMAINDER)


class UsageError(Exception):
    """Bad command-line input; the message is argparse's."""


class _Unhandled(Exception):
    """The lean engine stops: argparse parses this command line instead."""


class Namespace:
    """The parsed options as attributes, like argparse.Namespace (equal when vars() are)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __eq__(self, other):
        if not isinstance(other, Namespace):
            return NotImplemented
        return vars(self) == vars(other)

    def __contains__(self, key) -> bool:
        return key in self.__dict__

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


class Argument:
    """One add_argument (or add_subparsers) call, in the terms argparse's parsing uses:
    option_strings (empty for a positional), dest, nargs, default, type, required, choices."""

    def __init__(self, flags: tuple, kwargs: dict, parser_defaults: dict):
        self.kind = kwargs.get("action", "store")
        self.option_strings = list(flags) if flags and flags[0][:1] == "-" else []
        self.dest = _dest(flags, kwargs)
        self.nargs = 0 if self.kind in ("store_true", "help") else kwargs.get("nargs")
        self.type = kwargs.get("type")
        self.required = not self.option_strings and _positional_required(kwargs)
        self.choices = None
        self.default = _default(self.kind, self.dest, kwargs, parser_defaults)
        self.lean = _lean_argument(flags, kwargs, self.kind)


def _lean_argument(flags: tuple, kwargs: dict, kind: str) -> bool:
    """Whether the lean engine implements this add_argument call exactly as argparse does
    (anything else, including what argparse would refuse, is left to argparse)."""
    if not set(kwargs) <= _ARGUMENT_KWARGS or kind not in _ACTIONS or not flags:
        return False
    if kind in ("store_true", "help") and set(kwargs) & {"type", "nargs", "metavar"}:
        return False
    if kwargs.get("type") is not None and not callable(kwargs["type"]):
        return False
    if flags[0][:1] == "-":
        return all(f[:1] == "-" for f in flags) and kwargs.get("nargs") is None
    return len(flags) == 1 and kind == "store" and "dest" not in kwargs \
        and kwargs.get("nargs") in _POSITIONAL_NARGS


def _dest(flags: tuple, kwargs: dict) -> str:
    """argparse's dest: the positional's name, or dest=, or the first long option (else the
    first option) without its dashes and with '-' turned into '_'."""
    if not flags or flags[0][:1] != "-":
        return flags[0] if flags else kwargs.get("dest", "")
    if kwargs.get("dest") is not None:
        return kwargs["dest"]
    longs = [f for f in flags if len(f) > 1 and f[1] == "-"]
    return (longs or list(flags))[0].lstrip("-").replace("-", "_")


def _positional_required(kwargs: dict) -> bool:
    nargs = kwargs.get("nargs")
    return nargs not in ("?", "*") or (nargs == "*" and "default" not in kwargs)


def _default(kind: str, dest: str, kwargs: dict, parser_defaults: dict):
    """argparse's default: default=, else the parser's set_defaults, else the action's own."""
    if "default" in kwargs:
        return kwargs["default"]
    if dest in parser_defaults:
        return parser_defaults[dest]
    return {"help": _SUPPRESS, "store_true": False}.get(kind)


class SubParsers:
    """What add_subparsers returns: records add_parser calls; each makes a recording Parser."""

    def __init__(self, kwargs: dict):
        self.kwargs = kwargs
        self.parsers: list[tuple[str, dict, Parser]] = []
        self.argument = Argument((), {}, {})
        self.argument.kind = "parsers"
        self.argument.dest = kwargs.get("dest") or _SUPPRESS
        self.argument.nargs = _PARSER
        self.argument.required = bool(kwargs.get("required", False))
        self.argument.default = None
        self.argument.choices = {}
        self.argument.lean = set(kwargs) <= _SUBPARSERS_KWARGS

    def add_parser(self, name: str, **kwargs) -> Parser:
        """A parser for verb `name`; `help` is the verb's line in the parent's help."""
        parser_kwargs = {k: v for k, v in kwargs.items() if k != "help"}
        parser = Parser(**parser_kwargs)
        if name in self.argument.choices:
            self.argument.lean = False   # argparse refuses it: let it say so
        self.parsers.append((name, kwargs, parser))
        self.argument.choices[name] = parser
        return parser


class Parser:
    """Records argparse calls and parses the common case itself (see the module's doc).

    parse_args raises UsageError with argparse's message for bad input, and SystemExit(0)
    after printing help for -h/--help, as argparse does."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[tuple[str, tuple, dict]] = []
        self._actions: list[Argument] = []
        self.options: dict[str, Argument] = {}
        self.defaults: dict = {}
        self.subparsers: SubParsers | None = None
        self.lean = set(kwargs) <= _PARSER_KWARGS
        if kwargs.get("add_help", True):
            self._add(Argument(("-h", "--help"), {"action": "help"}, {}))

    # ----- recording -----

    def add_argument(self, *flags, **kwargs) -> Argument:
        """argparse's add_argument (recorded; replayed into argparse when needed)."""
        self.calls.append(("add_argument", flags, kwargs))
        return self._add(Argument(flags, kwargs, self.defaults))

    def set_defaults(self, **kwargs) -> None:
        """argparse's set_defaults: attributes set whatever the command line says."""
        self.calls.append(("set_defaults", (), kwargs))
        self.defaults.update(kwargs)
        for argument in self._actions:
            if argument.dest in kwargs:
                argument.default = kwargs[argument.dest]

    def add_subparsers(self, **kwargs) -> SubParsers:
        """argparse's add_subparsers; the verbs' parsers are recording Parsers too (a
        parser_class= is accepted and ignored)."""
        kwargs.pop("parser_class", None)
        if self.subparsers is not None:
            self.lean = False
        self.subparsers = SubParsers(kwargs)
        self.calls.append(("add_subparsers", (self.subparsers,), kwargs))
        self._add(self.subparsers.argument)
        return self.subparsers

    def _add(self, argument: Argument) -> Argument:
        for option in argument.option_strings:
            if option in self.options or _looks_negative(option) or option[1:2] == "":
                self.lean = False
            self.options[option] = argument
        self._actions.append(argument)
        self.lean = self.lean and argument.lean
        return argument

    # ----- parsing -----

    def parse_args(self, args: list[str] | None = None) -> Namespace:
        """The parsed command line (sys.argv[1:] when `args` is None); see the class doc."""
        args = sys.argv[1:] if args is None else list(args)
        namespace = self.lean_parse(args)
        if namespace is None:
            return self.argparse_parser().parse_args(args)
        return namespace

    def lean_parse(self, args: list[str]) -> Namespace | None:
        """What argparse's parse_args(args) returns, computed without argparse; None where
        argparse must parse instead (help, an error, a feature the lean engine lacks)."""
        try:
            namespace, extras = self.parse_known(args)
        except _Unhandled:
            return None
        return None if extras else namespace

    def parse_known(self, args: list[str]) -> tuple[Namespace, list[str]]:
        """argparse's parse_known_args into a new Namespace: (namespace, words not used).
        Raises _Unhandled where argparse would report an error or print help."""
        if not self.lean:
            raise _Unhandled
        namespace = Namespace()
        for argument in self._actions:
            if argument.dest is not _SUPPRESS and argument.default is not _SUPPRESS \
                    and argument.dest not in namespace:
                setattr(namespace, argument.dest, argument.default)
        for dest, value in self.defaults.items():
            if dest not in namespace:
                setattr(namespace, dest, value)
        return _Parse(self, args, namespace).run()

    def argparse_parser(self):
        """A real argparse parser made by replaying the recorded calls (imports argparse)."""
        argparse_class = _argparse_parser_class()
        return _replay(self, argparse_class(**self.kwargs), argparse_class)

    # ----- classifying words (argparse's _parse_optional) -----

    def classify(self, word: str) -> tuple | None:
        """None for an argument word, else (Argument or None, option string, explicit value
        or None) for an option word. Raises _Unhandled where argparse reports ambiguity."""
        if not word or word[0] != "-":
            return None
        if word in self.options:
            return self.options[word], word, None
        if len(word) == 1:
            return None
        if "=" in word:
            option, value = word.split("=", 1)
            if option in self.options:
                return self.options[option], option, value
        matches = self._option_matches(word)
        if len(matches) > 1:
            raise _Unhandled
        if matches:
            return matches[0]
        if _looks_negative(word) or " " in word:
            return None
        return None, word, None

    def _option_matches(self, word: str) -> list[tuple]:
        """argparse's _get_option_tuples: the options `word` may abbreviate or start with."""
        if word[1] == "-":
            prefix, value = word.split("=", 1) if "=" in word else (word, None)
            return [(self.options[o], o, value) for o in self.options if o.startswith(prefix)]
        matches = []
        for option in self.options:
            if option == word[:2]:
                matches.append((self.options[option], option, word[2:]))
            elif option.startswith(word):
                matches.append((self.options[option], option, None))
        return matches


def _looks_negative(word: str) -> bool:
    """argparse's negative-number test: r'^-\\d+$|^-\\d*\\.\\d+$' ($ allows a final newline)."""
    body = word[1:-1] if word.endswith("\n") else word[1:]
    whole, dot, fraction = body.partition(".")
    if not dot:
        return body.isdecimal()
    return (not whole or whole.isdecimal()) and fraction.isdecimal()


class _Parse:
    """One run of argparse's _parse_known_args over `words` for `parser`."""

    def __init__(self, parser: Parser, words: list[str], namespace: Namespace):
        self.parser, self.words, self.namespace = parser, words, namespace
        self.options: dict[int, tuple] = {}
        self.pattern = self._pattern()
        self.positionals = [a for a in parser._actions if not a.option_strings]
        self.seen: set[int] = set()
        self.extras: list[str] = []

    def _pattern(self) -> str:
        """One letter per word: O an option, A an argument, '-' the first `--`."""
        letters = []
        for i, word in enumerate(self.words):
            if word == "--":
                letters.append("-" + "A" * (len(self.words) - i - 1))
                break
            option = self.parser.classify(word)
            if option is not None:
                self.options[i] = option
            letters.append("A" if option is None else "O")
        return "".join(letters)

    def run(self) -> tuple[Namespace, list[str]]:
        start = 0
        last_option = max(self.options, default=-1)
        while start <= last_option:
            next_option = min(i for i in self.options if i >= start)
            if start != next_option:
                end = self.consume_positionals(start)
                if end > start:
                    start = end
                    continue
            if start not in self.options:
                self.extras.extend(self.words[start:next_option])
                start = next_option
            start = self.consume_optional(start)
        stop = self.consume_positionals(start)
        self.extras.extend(self.words[stop:])
        self.finish()
        return self.namespace, self.extras

    def consume_optional(self, start: int) -> int:
        """The option at `start` (and those combined with it, as in -it); the next index."""
        argument, option, explicit = self.options[start]
        taken = []
        while True:
            if argument is None:
                self.extras.append(self.words[start])
                return start + 1
            if explicit is None:
                count = _match_count(argument, self.pattern[start + 1:])
                taken.append((argument, self.words[start + 1:start + 1 + count]))
                stop = start + 1 + count
                break
            count = _match_count(argument, "A")
            if count == 0 and option[1] != "-" and explicit != "":
                taken.append((argument, []))
                option = "-" + explicit[0]
                if option not in self.parser.options:
                    raise _Unhandled
                argument, explicit = self.parser.options[option], explicit[1:] or None
            elif count == 1:
                taken.append((argument, [explicit]))
                stop = start + 1
                break
            else:
                raise _Unhandled
        for argument, words in taken:
            self.take(argument, words)
        return stop

    def consume_positionals(self, start: int) -> int:
        counts = _match_partial(self.positionals, self.pattern[start:])
        for argument, count in zip(self.positionals, counts):
            self.take(argument, self.words[start:start + count])
            start += count
        del self.positionals[:len(counts)]
        return start

    def take(self, argument: Argument, words: list[str]) -> None:
        """argparse's take_action: convert `words`, then store, append or descend."""
        self.seen.add(id(argument))
        value = _values(argument, words)
        if argument.kind == "store":
            setattr(self.namespace, argument.dest, value)
        elif argument.kind == "store_true":
            setattr(self.namespace, argument.dest, True)
        elif argument.kind == "append":
            setattr(self.namespace, argument.dest, _appended(self.namespace, argument.dest, value))
        elif argument.kind == "parsers":
            self.descend(argument, value)
        else:   # help
            raise _Unhandled

    def descend(self, argument: Argument, words: list[str]) -> None:
        """The verb's own parser parses the words after it (argparse's subparsers action)."""
        if argument.dest is not _SUPPRESS:
            setattr(self.namespace, argument.dest, words[0])
        namespace, extras = argument.choices[words[0]].parse_known(words[1:])
        if extras:
            raise _Unhandled
        self.namespace.__dict__.update(vars(namespace))

    def finish(self) -> None:
        """Required arguments present; string defaults of unseen arguments converted."""
        for argument in self.parser._actions:
            if id(argument) in self.seen:
                continue
            if argument.required:
                raise _Unhandled
            default = argument.default
            if isinstance(default, str) and getattr(self.namespace, argument.dest, None) is default:
                setattr(self.namespace, argument.dest, _value(argument, default))


def _appended(namespace: Namespace, dest: str, value) -> list:
    items = getattr(namespace, dest, None)
    if items is None:
        return [value]
    if type(items) is not list:
        raise _Unhandled
    return items + [value]


def _values(argument: Argument, words: list[str]):
    """argparse's _get_values: the value `words` give `argument`."""
    nargs = argument.nargs
    if nargs not in (_PARSER, REMAINDER) and "--" in words:
        words = list(words)
        words.remove("--")
    if not words and nargs == "?":
        value = argument.default
        return _checked(argument, _value(argument, value)) if isinstance(value, str) else value
    if not words and nargs == "*" and not argument.option_strings:
        return argument.default if argument.default is not None else words
    if len(words) == 1 and nargs in (None, "?"):
        return _checked(argument, _value(argument, words[0]))
    if nargs == _PARSER:
        return [_checked(argument, _value(argument, w)) if i == 0 else _value(argument, w)
                for i, w in enumerate(words)]
    if nargs == 0:
        return []
    if nargs is None or nargs == "?":
        raise _Unhandled   # a lone `--` taken as the value: leave the oddity to argparse
    return [_value(argument, w) for w in words]


def _value(argument: Argument, word: str):
    if argument.type is None:
        return word
    try:
        return argument.type(word)
    except Exception:   # argparse reports ValueError/TypeError; it decides about the rest
        raise _Unhandled from None


def _checked(argument: Argument, value):
    if argument.choices is not None and value not in argument.choices:
        raise _Unhandled
    return value


# ----- matching nargs (argparse's regular expressions, without `re`) -----

_NARGS_ATOMS = {   # argparse's nargs patterns, as (letters, least, most) repeats
    None: (("-", 0, _MANY), ("A", 1, 1), ("-", 0, _MANY)),            # (-*A-*)
    "?": (("-", 0, _MANY), ("A", 0, 1), ("-", 0, _MANY)),             # (-*A?-*)
    "*": (("-", 0, _MANY), ("A-", 0, _MANY)),                         # (-*[A-]*)
    "+": (("-", 0, _MANY), ("A", 1, 1), ("A-", 0, _MANY)),            # (-*A[A-]*)
    REMAINDER: (("-AO", 0, _MANY),),                                  # ([-AO]*)
    _PARSER: (("-", 0, _MANY), ("A", 1, 1), ("-AO", 0, _MANY)),       # (-*A[-AO]*)
    0: (("-", 0, _MANY), ("-", 0, _MANY)),                            # (-*-*)
}


def _atoms(argument: Argument) -> tuple:
    """The argument's nargs pattern; an option's loses the '-' (no `--` among its values)."""
    atoms = _NARGS_ATOMS[argument.nargs]
    if argument.option_strings:
        atoms = tuple((letters.replace("-", ""), least, most)
                      for letters, least, most in atoms if letters != "-")
    return atoms


def _ends(atoms: tuple, pattern: str, start: int):
    """Where `atoms` can stop matching `pattern` from `start`, in the order a backtracking
    regular-expression engine tries them (greedy: longest first)."""
    if not atoms:
        yield start
        return
    letters, least, most = atoms[0]
    stop = start
    while stop - start < most and stop < len(pattern) and pattern[stop] in letters:
        stop += 1
    for end in range(stop, start + least - 1, -1):
        yield from _ends(atoms[1:], pattern, end)


def _match(groups: list[tuple], pattern: str, start: int = 0) -> list[int] | None:
    """re.match of the groups one after another: how many letters each took, or None."""
    if not groups:
        return []
    for end in _ends(groups[0], pattern, start):
        rest = _match(groups[1:], pattern, end)
        if rest is not None:
            return [end - start] + rest
    return None


def _match_count(argument: Argument, pattern: str) -> int:
    """argparse's _match_argument: how many words the option takes (_Unhandled: an error)."""
    counts = _match([_atoms(argument)], pattern)
    if counts is None:
        raise _Unhandled
    return counts[0]


def _match_partial(positionals: list[Argument], pattern: str) -> list[int]:
    """argparse's _match_arguments_partial: the most leading positionals that match."""
    for i in range(len(positionals), 0, -1):
        counts = _match([_atoms(a) for a in positionals[:i]], pattern)
        if counts is not None:
            return counts
    return []


# ----- argparse, for help and errors -----

def _replay(recording: Parser, target, parser_class):
    """Make on argparse parser `target` the calls recorded on `recording`."""
    for method, args, kwargs in recording.calls:
        if method == "add_subparsers":
            sub = target.add_subparsers(parser_class=parser_class, **kwargs)
            for name, parser_kwargs, child in args[0].parsers:
                _replay(child, sub.add_parser(name, **parser_kwargs), parser_class)
        else:
            getattr(target, method)(*args, **kwargs)
    return target


def _argparse_parser_class():
    """pdocker's argparse parser class: errors raise UsageError; help asks the terminal its
    width once. Made when first needed, so that argparse is imported only then."""
    import argparse

    class HelpFormatter(argparse.HelpFormatter):
        """argparse's formatter, asking the terminal for its width once per process:
        argparse makes a formatter for every add_argument (to check the option), and each
        asks shutil.get_terminal_size, which imports shutil (and with it zlib, bz2, lzma)."""

        width: int | None = None

        def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
            if width is None:
                width = HelpFormatter.terminal_width()
            super().__init__(prog, indent_increment, max_help_position, width)

        @staticmethod
        def terminal_width() -> int:
            """What argparse uses: $COLUMNS, else the terminal's, else 80; less 2."""
            if HelpFormatter.width is None:
                HelpFormatter.width = _terminal_columns() - 2
            return HelpFormatter.width

    class ArgparseParser(argparse.ArgumentParser):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("formatter_class", HelpFormatter)
            super().__init__(*args, **kwargs)

        def error(self, message):
            raise UsageError(message)

    return ArgparseParser


def _terminal_columns() -> int:
    """$COLUMNS, else the width of the terminal on stdout, else 80."""
    import os
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80
