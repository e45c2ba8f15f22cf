"""pdocker: Docker's command line over the runtime library (runtime/).

The library never imports this package (an import-linter contract checks it): the kubelet
uses the same library without any of the command line. Modules: cli (the entry point and
its errors), parser (global options, which verbs get a parser), cliargs (an argparse-compatible
parser that skips importing argparse), containers, reports and images (the verbs), flags
(values of flags), output (tables, sizes, times), terminal (raw mode and the attach relay),
launcher (the sh script `make setup` installs as .venv/bin/pdocker).
"""
