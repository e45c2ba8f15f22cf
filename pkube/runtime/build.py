"""``pdocker build``: execute a Dockerfile into images, one layer per filesystem step, cached.

Every step yields an image (intermediate ones are hidden from ``images``). The cache maps
(parent image id, the instruction after variable expansion, a content hash of COPY/ADD
sources, the build args a RUN sees) to the image the step made, so an unchanged step prints
``---> Using cache`` and is not run again.

RUN steps go through a ``runner(layer_dirs, argv, env, workdir, user) -> upper dir`` supplied
by the caller (``Runtime.build_runner()``): it runs argv in a container over those read-only
layers (str paths), raises when the command fails, and hands over its upper dir (str or
PathLike), which this module turns into a layer and then deletes.

Paths given to this module are str or os.PathLike; the staging and context trees are walked
with pathlib inside (not on the `pdocker run` path, so its imports do not matter here).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from pkube.runtime import dockerfile as df
from pkube.runtime.errors import ImageError, ImageNotFound
from pkube.runtime.imagestore import Image, ImageStore, canonical_json
from pkube.runtime.reference import normalize_ref
from pkube.runtime.errors import LayerError
from pkube.runtime.layertar import unpack_members
from pkube.runtime.layertree import lookup, resolve_path, union_entries, walk_tree

Runner = Callable[[list[str], list[str], dict, str, str], "str | os.PathLike"]
BUSYBOX_NAMES = ("busybox", "busybox:latest")


class BuildError(ImageError):
    """A build step failed; the message names the step."""


@dataclass
class BuildState:
    """What the steps so far have produced."""

    image: Image | None = None          # None = scratch
    config: dict = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)   # ARGs in scope, with values
    stages: dict[str, Image | None] = field(default_factory=dict)

    @property
    def image_id(self) -> str:
        return self.image.id if self.image else "scratch"

    @property
    def layer_dirs(self) -> list[str]:
        return list(self.image.layer_dirs) if self.image else []

    def variables(self) -> dict[str, str]:
        """Values visible to $VAR expansion: ARGs, overridden by ENV (as in Docker)."""
        return {**{k: v for k, v in self.args.items() if v is not None}, **df.env_dict(self.config)}


def build(store: ImageStore, context_dir: str | os.PathLike, dockerfile: str | os.PathLike | None,
          tag: str | None,
          runner: Runner | None = None, build_args: dict[str, str] | None = None,
          progress: Callable[[str], None] = print, no_cache: bool = False,
          pull: Callable[[str], Image] | None = None, target: str | None = None) -> Image:
    """Build ``dockerfile`` (default ``context_dir/Dockerfile``) and tag the result ``tag``.

    ``pull(ref)`` is called for a FROM image that is not in the store (None: only local
    images and the offline busybox). ``target`` stops after the stage of that name.
    Raises BuildError / DockerfileError with a clear message.
    """
    context = Path(context_dir).resolve()
    if not context.is_dir():
        raise BuildError(f"build context {context_dir} is not a directory")
    path = Path(dockerfile) if dockerfile else context / "Dockerfile"
    try:
        text = path.read_text()
    except OSError as e:
        raise BuildError(f"cannot read Dockerfile {path}: {e.strerror}") from None
    builder = Builder(store, context, runner, dict(build_args or {}), progress, no_cache, pull)
    image = builder.run(_up_to_target(df.parse(text), target))
    final = store.add_config(store.raw_config_bytes(image.id), ref=tag)
    progress(f"Successfully built {final.short_id}")
    if tag:
        progress(f"Successfully tagged {normalize_ref(tag)}")
    return store.get(final.id)


def _up_to_target(instructions: list[df.Instruction], target: str | None) -> list[df.Instruction]:
    """The instructions up to the end of stage ``target`` (all of them for None)."""
    if not target:
        return instructions
    in_target = False
    for index, ins in enumerate(instructions):
        if ins.cmd != "FROM":
            continue
        if in_target:
            return instructions[:index]
        words = ins.args.split()
        in_target = len(words) == 3 and words[2].lower() == target.lower()
    if not in_target:
        raise BuildError(f"target stage {target!r} could not be found")
    return instructions


class Builder:
    def __init__(self, store: ImageStore, context: Path, runner: Runner | None,
                 build_args: dict[str, str], progress, no_cache: bool, pull):
        self.store = store
        self.context = context
        self.runner = runner
        self.build_args = build_args
        self.used_args: set[str] = set()
        self.progress = progress
        self.no_cache = no_cache
        self.pull = pull
        self.state = BuildState()
        self.ignore = IgnoreRules.load(context)
        self.global_args: dict[str, str | None] = {}
        self.seen_from = False
        self.stage_count = 0
        self.stage_keys: list[str] = []   # the names of the stage being built

    def run(self, instructions: list[df.Instruction]) -> Image:
        total = len(instructions)
        for number, ins in enumerate(instructions, 1):
            self.progress(f"Step {number}/{total} : {ins.original}")
            self._step(ins)
            for key in self.stage_keys:
                self.state.stages[key] = self.state.image
        unused = sorted(set(self.build_args) - self.used_args)
        if unused:
            self.progress(f"[Warning] One or more build-args {unused} were not consumed")
        if self.state.image is None:
            raise BuildError("the build produced no image (FROM scratch with no steps)")
        return self.state.image

    def _step(self, ins: df.Instruction) -> None:
        if ins.cmd == "ARG":
            return self._arg(ins)
        if ins.cmd == "FROM":
            return self._from(ins)
        if ins.cmd in ("COPY", "ADD"):
            return self._copy(ins)
        if ins.cmd == "RUN":
            return self._run(ins)
        if ins.cmd == "WORKDIR":
            return self._workdir(ins)
        config = json.loads(json.dumps(self.state.config))
        df.apply_config_instruction(config, ins, self.state.variables())
        self._commit_step(ins, self._describe(ins), "", config, None)

    # -- instructions -----------------------------------------------------------------------

    def _arg(self, ins: df.Instruction) -> None:
        before_from = not self.seen_from
        scope = self.global_args if before_from else self.state.args
        variables = {k: v for k, v in self.global_args.items() if v} if before_from \
            else self.state.variables()
        for key, default in df.key_values(ins, variables):
            if key in self.build_args:
                self.used_args.add(key)
                scope[key] = self.build_args[key]
            elif default is not None or before_from:
                scope[key] = default
            else:
                scope[key] = self.global_args.get(key)
        self.progress(f" ---> {self.state.image.short_id if self.state.image else 'scratch'}")

    def _from(self, ins: df.Instruction) -> None:
        words = df.expand(ins.args, {k: v for k, v in self.global_args.items() if v}).split()
        if not words or (len(words) not in (1, 3)) or (len(words) == 3 and words[1].lower() != "as"):
            raise ins.fail("usage: FROM image [AS name]")
        self.seen_from = True
        image = self._base_image(ins, words[0])
        config = dict(image.config) if image else {}
        triggers = config.pop("OnBuild", None) or []
        self.state = BuildState(image=image, config=config, stages=self.state.stages)
        self.stage_keys = [str(self.stage_count)] + ([words[2].lower()] if len(words) == 3 else [])
        self.stage_count += 1
        self.progress(f" ---> {image.short_id if image else 'scratch'}")
        for trigger in triggers:
            self.progress(f"# Executing ONBUILD trigger: {trigger}")
            self._step(df.parse_line(trigger, ins.line))

    def _base_image(self, ins: df.Instruction, ref: str) -> Image | None:
        if ref == "scratch":
            return None
        if ref.lower() in self.state.stages:
            return self.state.stages[ref.lower()]
        try:
            return self.store.get(ref)
        except ImageNotFound:
            if ref in BUSYBOX_NAMES:
                return self.store.ensure_busybox()
            if self.pull is not None:
                return self.pull(ref)
            raise ins.fail(f"image {ref!r} not found locally (pull it first)") from None

    def _workdir(self, ins: df.Instruction) -> None:
        config = json.loads(json.dumps(self.state.config))
        df.apply_config_instruction(config, ins, self.state.variables())
        path = config["WorkingDir"]
        if lookup(self.state.layer_dirs, resolve_path(self.state.layer_dirs, path)) is not None:
            return self._commit_step(ins, self._describe(ins), "", config, None)

        def make(staging: Path) -> None:
            self._prepare_dir(staging, path)

        self._commit_step(ins, self._describe(ins), "", config, make)

    def _copy(self, ins: df.Instruction) -> None:
        variables = self.state.variables()
        argv = ins.exec_form()
        words = [df.expand(w, variables) for w in argv] if argv is not None \
            else df.expand(ins.args, variables).split()
        if len(words) < 2:
            raise ins.fail(f"{ins.cmd} needs a source and a destination")
        *patterns, dest = words
        owner = self._owner(ins)
        if "from" in ins.flags:
            make, content = self._copy_from_stage(ins, patterns, dest, owner)
        else:
            make, content = self._copy_from_context(ins, patterns, dest, owner)
        self._commit_step(ins, self._describe(ins), content, self.state.config, make)

    def _destination(self, ins, written: str, source_count: int) -> tuple[str, bool]:
        """(absolute destination, whether the sources go *into* it) for COPY/ADD, as Docker:
        a destination ending in "/" or "." or naming a directory of the image is a directory;
        any other names the file to write. Several sources need a destination written as a
        directory (raises DockerfileError otherwise, with Docker's message)."""
        written_as_dir = written.endswith("/") or written.rsplit("/", 1)[-1] in (".", "..")
        if source_count > 1 and not written_as_dir:
            raise ins.fail(f"When using {ins.cmd} with more than one source file, "
                           "the destination must be a directory and end with a /")
        dest = "/" + posixpath.normpath(self._absolute_dest(written)).lstrip("/")
        return dest, written_as_dir or self._is_image_dir(dest)

    def _is_image_dir(self, path: str) -> bool:
        """True when ``path`` is a directory (or a link to one) in the image built so far."""
        layers = self.state.layer_dirs
        found = lookup(layers, resolve_path(layers, path)) if layers else None
        return found is not None and os.path.isdir(found) and not os.path.islink(found)

    def _copy_from_context(self, ins, patterns: list[str], written: str, owner):
        sources = [s for p in patterns for s in self._sources(ins, p)]
        dest, as_dir = self._destination(ins, written, len(sources))

        def make(staging: Path) -> None:
            for source in sources:
                self._place(ins, staging, source, dest, as_dir, owner)

        return make, _content_hash(sources, self._keep)

    def _copy_from_stage(self, ins, patterns: list[str], written: str, owner):
        """COPY --from=<stage name|index|image>: sources read from that image's merged view."""
        image = self._stage_image(ins, ins.flags["from"])
        layers = image.layer_dirs
        sources = []
        for pattern in patterns:
            path = resolve_path(layers, pattern)
            found = lookup(layers, path)
            if found is None:
                raise ins.fail(f"{pattern}: not found in {ins.flags['from']}")
            sources.append((path, Path(found)))
        dest, as_dir = self._destination(ins, written, len(sources))

        def make(staging: Path) -> None:
            for path, found in sources:
                if found.is_dir():
                    _copy_union(layers, path, self._prepare_dir(staging, dest), owner)
                else:
                    self._place(ins, staging, found, dest, as_dir, owner)

        return make, hashlib.sha256(canonical_json([image.id, patterns])).hexdigest()

    def _stage_image(self, ins, name: str) -> Image:
        """The image of an earlier stage (by AS name or index), else a local image."""
        key = name.lower()
        if key in self.state.stages:
            if self.state.stages[key] is None:
                raise ins.fail(f"--from={name}: that stage is FROM scratch with no files")
            return self.state.stages[key]
        try:
            return self.store.get(name)
        except ImageNotFound:
            raise ins.fail(f"--from={name}: no such stage or local image") from None

    def _run(self, ins: df.Instruction) -> None:
        if self.runner is None:
            raise ins.fail("RUN needs a container runner (build through pdocker or Runtime)")
        argv = ins.command(self.state.config.get("Shell"))
        env = {**{k: v for k, v in self.state.args.items() if v is not None},
               **df.env_dict(self.state.config)}
        visible_args = sorted((k, v) for k, v in self.state.args.items() if v is not None)
        self.used_args.update(k for k, _ in visible_args)
        description = f"/bin/sh -c {ins.args}" if ins.exec_form() is None else json.dumps(argv)
        extra = canonical_json(visible_args).decode()

        def make_run() -> str | os.PathLike:
            try:
                return self.runner(self.state.layer_dirs, argv, env,
                                   self.state.config.get("WorkingDir") or "/",
                                   self.state.config.get("User") or "")
            except Exception as e:
                reason = str(e) if str(e).startswith("returned") else f"failed: {e}"
                raise BuildError(f"The command '{' '.join(argv)}' {reason}") from e

        self._commit_step(ins, description, extra, self.state.config, None, run=make_run)

    # -- steps and cache --------------------------------------------------------------------

    def _describe(self, ins: df.Instruction) -> str:
        if ins.cmd in ("COPY", "ADD"):
            return f"{ins.cmd} {ins.args}"
        return f"/bin/sh -c #(nop) {ins.cmd} {ins.args}"

    def _commit_step(self, ins, created_by: str, extra: str, config: dict,
                     make: Callable[[Path], None] | None,
                     run: Callable[[], str | os.PathLike] | None = None):
        key = _cache_key(self.state.image_id, ins, self.state.variables(), extra, config)
        cached = None if self.no_cache else self.store.build_cache_get(key)
        if cached is not None:
            self.progress(" ---> Using cache")
            self.state.image = self.store.get(cached)
        else:
            diff_id = self._layer(make, run)
            self.state.image = self.store.new_image(self.state.image, config, diff_id,
                                                    created_by, intermediate=True)
            self.store.build_cache_put(key, self.state.image.id)
        self.state.config = dict(self.state.image.config)
        self.progress(f" ---> {self.state.image.short_id}")

    def _layer(self, make, run) -> str | None:
        if run is not None:
            upper = run()
            try:
                return self.store.layers.import_directory(upper)
            finally:
                shutil.rmtree(upper, ignore_errors=True)
        if make is None:
            return None
        with _staging(Path(self.store.root)) as staging:
            make(staging)
            return self.store.layers.import_directory(staging)

    # -- COPY/ADD helpers -------------------------------------------------------------------

    def _sources(self, ins: df.Instruction, pattern: str) -> list[Path]:
        if "://" in pattern:
            raise ins.fail(f"remote sources are not supported: {pattern}")
        matches = sorted(glob.glob(pattern.lstrip("/") or ".", root_dir=self.context)) \
            if glob.has_magic(pattern) else [pattern.lstrip("/") or "."]
        result = []
        for match in matches:
            path = Path(os.path.realpath(self.context / match))
            if path != self.context and self.context not in path.parents:
                raise ins.fail(f"{pattern}: forbidden path outside the build context")
            if not path.exists() or not self._keep(path):
                if glob.has_magic(pattern):
                    continue
                raise ins.fail(f"{pattern}: file not found in build context "
                               "(or excluded by .dockerignore)")
            result.append(path)
        if not result:
            raise ins.fail(f"{pattern}: no source files were specified")
        return result

    def _keep(self, path: Path) -> bool:
        """False for what .dockerignore excludes (the context root itself is always kept)."""
        rel = os.path.relpath(path, self.context)
        return rel == "." or not self.ignore.excluded(rel)

    def _absolute_dest(self, dest: str) -> str:
        if dest.startswith("/"):
            return dest
        base = (self.state.config.get("WorkingDir") or "/").rstrip("/")
        return f"{base}/{dest}"

    def _owner(self, ins: df.Instruction) -> tuple[int, int]:
        spec = ins.flags.get("chown")
        if not spec:
            return 0, 0
        user, _, group = spec.partition(":")
        uid = self._lookup_id(ins, "etc/passwd", user)
        gid = self._lookup_id(ins, "etc/group", group) if group else uid
        return uid, gid

    def _lookup_id(self, ins, table: str, name: str) -> int:
        if name.isdigit():
            return int(name)
        path = lookup(self.state.layer_dirs, table)
        lines = Path(path).read_text().splitlines() if path and os.path.isfile(path) else []
        for line in lines:
            fields = line.split(":")
            if len(fields) > 2 and fields[0] == name:
                return int(fields[2])
        raise ins.fail(f"--chown: unknown name {name!r} in /{table}")

    def _place(self, ins, staging: Path, source: Path, dest: str, as_dir: bool, owner) -> None:
        if ins.cmd == "ADD" and source.is_file() and _is_archive(source):
            target = self._prepare_dir(staging, dest)
            _extract_archive(ins, source, target)
            return
        if source.is_dir():
            target = self._prepare_dir(staging, dest)
            _copy_tree(source, target, owner, self._keep)
            return
        if as_dir:
            target = self._prepare_dir(staging, dest) / source.name
        else:
            parent, _, name = dest.rstrip("/").rpartition("/")
            target = self._prepare_dir(staging, parent or "/") / name
        _copy_file(source, target, owner)

    def _prepare_dir(self, staging: Path, path: str) -> Path:
        """staging/path as a directory; parents copy the metadata of the image's own dirs
        (so COPY into /tmp keeps /tmp's 1777) or default to root 0755. Symlinks of the image
        on the way are followed (COPY into /bin when /bin -> usr/bin writes /usr/bin)."""
        path = resolve_path(self.state.layer_dirs, path)
        cur, rel = staging, ""
        for part in [p for p in path.split("/") if p]:
            cur, rel = cur / part, f"{rel}/{part}"
            _refuse_link(cur)
            if cur.is_dir():
                continue
            below = lookup(self.state.layer_dirs, rel)
            cur.mkdir()
            if below is not None and os.path.isdir(below) and not os.path.islink(below):
                st = os.lstat(below)
                os.chown(cur, st.st_uid, st.st_gid)
                os.chmod(cur, stat.S_IMODE(st.st_mode))
                os.utime(cur, (st.st_mtime, st.st_mtime))
            else:
                os.chmod(cur, 0o755)
        return cur


class IgnoreRules:
    """.dockerignore: later patterns win, ``!`` re-includes, a matched directory excludes
    everything below it. Paths are relative to the build context."""

    def __init__(self, patterns: list[str]):
        self.rules = []
        for line in patterns:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
            self.rules.append((negate, pattern))

    @classmethod
    def load(cls, context: Path) -> "IgnoreRules":
        try:
            return cls((context / ".dockerignore").read_text().splitlines())
        except FileNotFoundError:
            return cls([])

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negate, pattern in self.rules:
            if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
                result = not negate
        return result


def _cache_key(parent: str, ins: df.Instruction, variables: dict, extra: str, config: dict) -> str:
    text = df.expand(ins.original, variables) if ins.cmd in df.EXPANDED else ins.original
    return hashlib.sha256(canonical_json([parent, text, extra, config if ins.cmd != "RUN" else {}])
                          ).hexdigest()


def _content_hash(sources: list[Path], keep: Callable[[Path], bool]) -> str:
    """Hash of names, modes and contents of everything the sources name."""
    sha = hashlib.sha256()
    for source in sources:
        entries = [(source, source.name)]
        if source.is_dir():
            entries += [(p, f"{source.name}/{r}") for p, r in walk_tree(source) if keep(p)]
        for path, rel in entries:
            st = os.lstat(path)
            sha.update(f"{rel}\0{st.st_mode:o}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                sha.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        sha.update(chunk)
    return sha.hexdigest()


def _refuse_link(path: Path) -> None:
    """Staging trees hold links copied from the context: never write through one."""
    if path.is_symlink():
        raise BuildError(f"refusing to write through the symlink {path.name!r} in the new layer")


def _ensure_real_dir(base: Path, rel: str) -> None:
    """base/rel exists as a directory reached without any symlink (made 0755 if missing)."""
    cur = base
    for part in [p for p in rel.split("/") if p]:
        cur = cur / part
        _refuse_link(cur)
        if not cur.exists():
            cur.mkdir(0o755)


def _copy_file(source: str | Path, target: Path, owner: tuple[int, int]) -> None:
    if target.is_symlink():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    shutil.copy2(source, target)
    os.chown(target, *owner)
    os.chmod(target, stat.S_IMODE(os.stat(source).st_mode))


def _copy_tree(source: Path, target: Path, owner: tuple[int, int],
               keep: Callable[[Path], bool]) -> None:
    """The kept contents of source into target; links copied as links, never followed."""
    entries = [(p, r) for p, r in walk_tree(source) if keep(p)]
    for path, rel in entries:
        _ensure_real_dir(target, os.path.dirname(rel))
        _copy_entry(path, target / rel, owner)
    for path, rel in reversed(entries):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            mtime = os.lstat(path).st_mtime
            os.utime(target / rel, (mtime, mtime))


def _copy_union(layers: list[str], rel: str, target: Path, owner: tuple[int, int]) -> None:
    """Copy directory ``/rel`` of a layer stack's merged view into target (links as links)."""
    for name, path in sorted(union_entries(layers, rel).items()):
        dst = target / name
        _copy_entry(path, dst, owner)
        if stat.S_ISDIR(os.lstat(path).st_mode):
            _copy_union(layers, f"{rel.rstrip('/')}/{name}", dst, owner)


def _copy_entry(path: str | Path, dst: Path, owner: tuple[int, int]) -> None:
    """One entry to ``dst``, owned by ``owner``: a link as a link (replacing a file or link
    there), a directory as an empty one with its mode (never through a link), a regular
    file with its contents and mode; anything else is skipped."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        os.symlink(os.readlink(path), dst)
        os.lchown(dst, *owner)
    elif stat.S_ISDIR(st.st_mode):
        _refuse_link(dst)
        dst.mkdir(exist_ok=True)
        os.chown(dst, *owner)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    elif stat.S_ISREG(st.st_mode):
        _copy_file(path, dst, owner)


def _is_archive(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _extract_archive(ins, source: Path, target: Path) -> None:
    """ADD of a local tar (any compression): unpacked with the layer safety rules."""
    try:
        with tarfile.open(source, "r:*") as tf:
            unpack_members(tf, target)
    except (LayerError, tarfile.TarError) as e:
        raise ins.fail(f"cannot extract {source.name}: {e}") from e


@contextmanager
def _staging(root: Path) -> Iterator[Path]:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".build-{uuid.uuid4().hex}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
