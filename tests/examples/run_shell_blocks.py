#!/usr/bin/env python3
"""Runs the shell blocks of the user docs as written, each in a scratch directory.

Usage: run_shell_blocks.py MODE SOURCE_ROOT CACHESTORE READ_THROUGH FILL_RACE [DOC.md ...]
  MODE local: every block that needs no S3 server
  MODE rgw:   the blocks that need one, against the Ceph RGW that
              tests/servers/with-servers.sh --rgw started (CACHESTORE_RGW_*).
              Without it: fails when CI=true, otherwise a loud warning and
              exit 77 (skipped), as run_examples.py does.
  DOC.md defaults to README.md and every docs/*.md.

Every ```sh, ```bash and ```shell block runs in `bash -euo pipefail` from a new
empty directory (TMPDIR inside the scratch area too, so a block's own
`mktemp -d` is cleaned up), with PATH starting with the directory of the
example programs (the docs say to put build/examples on PATH), HOME in the
scratch area and no AWS_* or CACHESTORE_URL from the caller. It must exit 0.
A line `CMD || echo "exit $?"   # exit N` promises exit code N: the block's
"exit N" output lines must be exactly those promised, in order. A ```console
block runs its `$ ` lines one after another; the lines after a command are its
output (stdout and stderr), compared line by line (`...` stands for any lines).

Lines right above a block (blank lines between are fine) may say how to run it:

  <!-- shell: not run: REASON -->   not run; counted and listed with REASON
  <!-- shell: env VAR ... -->       the block reads these variables, which the
                                    text above it names (`VAR`); the runner
                                    sets them (PROVIDED below)
  <!-- shell: in a copy of the source tree -->
                                    run from a copy of SOURCE_ROOT (no build
                                    directories) instead of an empty directory
  <!-- shell: expect REGEX -->      the block's stdout matches REGEX (re.M)

A block that reads a variable it does not set, not listed by an env marker,
fails: the doc must say what a block needs. A block with an S3 variable
(S3_VARS) runs in MODE rgw only; the others in MODE local only.
Python standard library only.
"""
import glob
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_snippets import blocks_of  # noqa: E402 (the same fences as the C++ check)
from run_examples import isolated_env, no_rgw_exit, rgw_from_env  # noqa: E402

SHELL_LANGS = {"sh", "bash", "shell", "console"}
PROGRAMS = ("cachestore", "read_through", "fill_race")
MARKER = re.compile(r"^<!--\s*shell:\s*(.*?)\s*-->\s*$")
NOT_RUN = re.compile(r"^not run(?: in CI)?:\s*(.+)$")
ENV = re.compile(r"^env\s+([A-Za-z_][A-Za-z0-9_]*(?:\s+[A-Za-z_][A-Za-z0-9_]*)*)$")
SOURCE_COPY = "in a copy of the source tree"
EXPECT = re.compile(r"^expect\s+(.+)$")
EXIT_PROMISE = re.compile(r'\|\|\s*echo\s+"exit \$\?"(?:\s*#\s*exit (\d+)\b)?')
# Variables a block may read without an env marker: the shell's and the runner's own.
STANDARD_VARS = {"PWD", "OLDPWD", "HOME", "PATH", "TMPDIR", "RANDOM", "UID", "EUID", "LINENO", "BASH_SOURCE",
                 "IFS", "OPTARG", "OPTIND", "REPLY", "SECONDS"}
S3_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "CACHE_BUCKET"}
# What an env marker may name: Run.provided() sets each.
PROVIDED = S3_VARS | {"CACHE_ROOT", "DESTDIR", "PKG_CONFIG_PATH", "PKG_CONFIG_SYSROOT_DIR"}
BLOCK_TIMEOUT = 600
TAIL = 1500


class Block:
    def __init__(self, doc, line, lang, body, markers, prose):
        self.doc, self.line, self.lang, self.body, self.prose = doc, line, lang, body, prose
        self.not_run, self.env, self.source_copy, self.expect, self.problems = None, [], False, [], []
        for m in markers:
            if NOT_RUN.match(m):
                self.not_run = NOT_RUN.match(m)[1]
            elif ENV.match(m):
                self.env += ENV.match(m)[1].split()
            elif m == SOURCE_COPY:
                self.source_copy = True
            elif EXPECT.match(m):
                try:
                    self.expect.append(re.compile(EXPECT.match(m)[1], re.M))
                except re.error as e:
                    self.problems.append(f"bad expect regex {m!r}: {e}")
            else:
                self.problems.append(f"unknown marker <!-- shell: {m} -->")

    @property
    def where(self):
        return f"{self.doc}:{self.line}"

    @property
    def first_line(self):
        return next((x.strip() for x in self.body if x.strip()), "(empty)")

    @property
    def needs_s3(self):
        return bool(S3_VARS & set(self.env))


def shell_blocks(root, rel):
    """The shell blocks of one doc, with their marker lines and the prose above them."""
    path = os.path.join(root, rel)
    lines = open(path).read().splitlines()
    out, prev_end = [], 0
    for lang, _, line, body in blocks_of(pathlib.Path(path)):
        fence = line - 1  # 0-based index of the opening fence
        if lang in SHELL_LANGS:
            markers, k = [], fence - 1
            while k >= 0 and (not lines[k].strip() or MARKER.match(lines[k])):
                if lines[k].strip():
                    markers.insert(0, MARKER.match(lines[k])[1])
                k -= 1
            out.append(Block(rel, line, lang, body, markers, "\n".join(lines[prev_end:fence])))
        prev_end = fence + len(body) + 2
    return out


def read_vars(body):
    """The variables a bash block reads but never sets itself."""
    text = "\n".join(body)
    # Quoted heredoc bodies (<<'END') are data, not shell.
    text = re.sub(r"<<-?\s*'(\w+)'\n.*?\n\1\n", "\n", text + "\n", flags=re.S)
    text = re.sub(r"'[^'\n]*'", "''", text)  # single-quoted strings expand nothing
    read = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    assigned = set(re.findall(r"(?:^|[\s;&|(])(?:export\s+|local\s+|readonly\s+|declare\s+(?:-\w+\s+)?)?"
                              r"([A-Za-z_][A-Za-z0-9_]*)=", text, re.M))
    assigned |= set(re.findall(r"\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b", text))
    return read - assigned - STANDARD_VARS


def tail(data):
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    text = text.rstrip()
    return ("..." + text[-TAIL:]) if len(text) > TAIL else text


def console_script(body):
    """A ```console block: ([command], [[expected output line]]) from its `$ ` lines."""
    cmds, outs, cur = [], [], None
    for line in body:
        if cur is not None and cmds[-1].endswith("\\"):
            cmds[-1] += "\n" + line
        elif line.startswith("$ "):
            cmds.append(line[2:])
            outs.append([])
            cur = len(cmds) - 1
        elif cur is None:
            raise ValueError(f"output before the first `$ ` command: {line!r}")
        else:
            outs[cur].append(line)
    return cmds, outs


def output_matches(want, got):
    """`want` lines against `got` lines, right-stripped; a `...` line matches any lines."""
    want, got = [w.rstrip() for w in want], [g.rstrip() for g in got]
    while want and not want[-1]:
        want.pop()
    while got and not got[-1]:
        got.pop()
    if "..." not in want:
        return want == got
    i = want.index("...")
    head, rest = want[:i], want[i + 1:]
    if got[:len(head)] != head:
        return False
    return any(output_matches(rest, got[j:]) for j in range(len(head), len(got) + 1))


class Run:
    def __init__(self, mode, root, programs):
        self.mode, self.root = mode, os.path.abspath(root)
        self.bindir = os.path.dirname(os.path.abspath(programs[0]))
        self.tmp = tempfile.mkdtemp(prefix="cachestore-shell-blocks-")
        self.destdir = os.path.join(self.tmp, "destdir")  # every block's DESTDIR: one install, then its use
        self.rgw = rgw_from_env() if mode == "rgw" else None
        self.secrets = [self.rgw["secret_key"]] if self.rgw else []
        self.ran, self.not_run, self.other_mode, self.failures, self.times = [], [], [], [], []
        self.counter = 0

    # ---- what the runner provides --------------------------------------------------------

    def provided(self, var, scratch):
        """The value of a variable an env marker names, or raise KeyError."""
        if var in S3_VARS:
            if not self.rgw:
                raise KeyError(var)
            return {"AWS_ACCESS_KEY_ID": self.rgw["access_key"], "AWS_SECRET_ACCESS_KEY": self.rgw["secret_key"],
                    "AWS_ENDPOINT_URL_S3": self.rgw["endpoint"], "AWS_REGION": self.rgw["region"],
                    "CACHE_BUCKET": self.rgw["bucket"]}[var]
        if var == "CACHE_ROOT":  # a root that does not exist yet, as on a new machine
            return os.path.join(scratch, "var", "cache", "chunks")
        if var in ("DESTDIR", "PKG_CONFIG_SYSROOT_DIR"):
            return self.destdir
        if var == "PKG_CONFIG_PATH":
            dirs = sorted({os.path.dirname(p) for p in glob.glob(os.path.join(self.destdir, "**", "*.pc"),
                                                                  recursive=True)})
            if not dirs:
                raise KeyError(f"{var} (nothing installed under DESTDIR: did the install block above run?)")
            return ":".join(dirs)
        raise KeyError(var)

    def source_copy(self, dest):
        def ignore(d, names):
            return [n for n in names if n in (".git", "__pycache__")
                    or os.path.isdir(os.path.join(d, n, "meson-private"))]  # build directories
        shutil.copytree(self.root, dest, ignore=ignore, symlinks=True)

    # ---- one block ------------------------------------------------------------------------

    def fail(self, b, why, out=b"", err=b""):
        self.failures.append((b, why, out, err))
        print(f"FAIL {b.where}: {b.first_line}\n     {why}", flush=True)
        if out:
            print("     --- stdout (tail)\n" + tail(out), flush=True)
        if err:
            print("     --- stderr (tail)\n" + tail(err), flush=True)

    def check_static(self, b):
        """What is wrong with a block before it runs: markers, undeclared variables, promises."""
        problems = list(b.problems)
        if b.lang != "console":
            for var in sorted(read_vars(b.body) - set(b.env)):
                problems.append(f"reads ${var}, which it does not set: name it in the text and add "
                                f"<!-- shell: env {var} --> (or make the block set it)")
        for var in b.env:
            if not re.search(r"`" + re.escape(var) + r"\b", b.prose):
                problems.append(f"<!-- shell: env {var} -->: the text above the block does not name `{var}`")
            if var not in PROVIDED:
                problems.append(f"<!-- shell: env {var} -->: the runner does not know how to set {var}")
        for line in b.body:
            m = EXIT_PROMISE.search(line)
            if m and m[1] is None:
                problems.append(f'`|| echo "exit $?"` without a `# exit N` comment saying which: {line.strip()!r}')
        return problems

    def run_block(self, b):
        self.counter += 1
        scratch = os.path.join(self.tmp, f"block{self.counter}")
        os.makedirs(os.path.join(scratch, "tmp"))
        os.makedirs(os.path.join(scratch, "home"))
        cwd = os.path.join(scratch, "work")
        if b.source_copy:
            self.source_copy(cwd)
        else:
            os.mkdir(cwd)
        env = {k: v for k, v in isolated_env(os.path.join(scratch, "home")).items()
               if k not in PROVIDED and not k.startswith("PKG_CONFIG")}
        env["PATH"] = self.bindir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        env["TMPDIR"] = os.path.join(scratch, "tmp")
        for var in b.env:
            try:
                env[var] = self.provided(var, scratch)
            except KeyError as e:
                self.fail(b, f"cannot set {e.args[0]}")
                return
        t0 = time.monotonic()
        if b.lang == "console":
            ok = self.run_console(b, env, cwd, scratch)
        else:
            ok = self.run_bash(b, env, cwd, scratch)
        dt = time.monotonic() - t0
        self.times.append((b, dt))
        if ok:
            self.ran.append(b)
            print(f"ok   {b.where}: {b.first_line} ({dt:.1f} s)", flush=True)

    def exec(self, b, argv, env, cwd):
        try:
            p = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            self.fail(b, f"still running after {BLOCK_TIMEOUT} s", e.stdout or b"", e.stderr or b"")
            return None
        for s in self.secrets:
            if s.encode() in p.stdout or s.encode() in p.stderr:
                self.fail(b, "the secret key appears in the block's output")
                return None
        return p

    def run_bash(self, b, env, cwd, scratch):
        script = os.path.join(scratch, "block.sh")
        with open(script, "w") as f:
            f.write("\n".join(b.body) + "\n")
        p = self.exec(b, ["bash", "-euo", "pipefail", script], env, cwd)
        if p is None:
            return False
        if p.returncode != 0:
            self.fail(b, f"exit {p.returncode} (bash -euo pipefail)", p.stdout, p.stderr)
            return False
        out = p.stdout.decode(errors="replace")
        promised = [m[1] for line in b.body if (m := EXIT_PROMISE.search(line))]
        got = re.findall(r"^exit (\d+)$", out, re.M)
        if got != promised:
            self.fail(b, f"exit codes {got} where the comments promise {promised}", p.stdout, p.stderr)
            return False
        for rx in b.expect:
            if not rx.search(out):
                self.fail(b, f"stdout does not match <!-- shell: expect {rx.pattern} -->", p.stdout, p.stderr)
                return False
        return True

    def run_console(self, b, env, cwd, scratch):
        try:
            cmds, outs = console_script(b.body)
        except ValueError as e:
            self.fail(b, str(e))
            return False
        sep = f"@@cachestore-console-{os.getpid()}@@"
        script = os.path.join(scratch, "block.sh")
        with open(script, "w") as f:
            f.write("exec 2>&1\n")
            for c in cmds:
                f.write(f"printf '%s\\n' '{sep}'\n{c}\n")
        p = self.exec(b, ["bash", script], env, cwd)
        if p is None:
            return False
        parts = p.stdout.decode(errors="replace").split(sep + "\n")[1:]
        if len(parts) != len(cmds):
            self.fail(b, f"{len(parts)} of {len(cmds)} commands ran", p.stdout)
            return False
        for c, want, got in zip(cmds, outs, parts):
            if not output_matches(want, got.split("\n")):
                self.fail(b, f"the output of `{c}` differs from the doc's:\n" + "\n".join(want), got.encode())
                return False
        return True

    # ---- all of them ---------------------------------------------------------------------------

    def run_doc(self, rel):
        try:
            blocks = shell_blocks(self.root, rel)
        except (OSError, ValueError) as e:
            self.failures.append((None, f"{rel}: {e}", b"", b""))
            print(f"FAIL {rel}: {e}", flush=True)
            return
        for b in blocks:
            problems = self.check_static(b)
            if problems:
                self.fail(b, "\n     ".join(problems))
            elif b.not_run is not None:
                self.not_run.append(b)
                print(f"---- {b.where}: {b.first_line}\n     marked not run: {b.not_run}", flush=True)
            elif b.needs_s3 != (self.mode == "rgw"):
                self.other_mode.append(b)
            else:
                self.run_block(b)

    def summary(self, t0):
        other = "rgw" if self.mode == "local" else "local"
        print(f"\n== shell blocks ({self.mode}): {len(self.ran)} run, {len(self.not_run)} marked not run, "
              f"{len(self.other_mode)} left to the {other} run, {len(self.failures)} failed "
              f"in {time.monotonic() - t0:.1f} s")
        for b, dt in self.times:
            print(f"   {dt:6.1f} s  {b.where}: {b.first_line}")
        for b in self.not_run:
            print(f"   not run  {b.where}: {b.first_line}\n            reason: {b.not_run}")
        for b in self.other_mode:
            print(f"   {other} run  {b.where}: {b.first_line}")
        for b, why, out, err in self.failures:
            print(f"   FAILED   {b.where if b else ''}: {b.first_line if b else ''}\n            {why}")
            if out:
                print("            --- stdout (tail)\n" + tail(out))
            if err:
                print("            --- stderr (tail)\n" + tail(err))


def main():
    if len(sys.argv) < 6 or sys.argv[1] not in ("local", "rgw"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, root, programs = sys.argv[1], sys.argv[2], sys.argv[3:6]
    docs = sys.argv[6:] or ["README.md"] + sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "docs", "*.md")))
    names = tuple(os.path.basename(p) for p in programs)
    if names != PROGRAMS or len({os.path.dirname(os.path.abspath(p)) for p in programs}) != 1:
        print(f"run_shell_blocks: the programs must be {', '.join(PROGRAMS)} in one directory, got {programs}",
              file=sys.stderr)
        return 2
    if mode == "rgw" and rgw_from_env() is None:
        return no_rgw_exit("the docs' shell blocks")
    r = Run(mode, root, programs)
    t0 = time.monotonic()
    try:
        print(f"shell blocks of {', '.join(docs)} ({mode}), PATH from {r.bindir}, scratch {r.tmp}", flush=True)
        for rel in docs:
            r.run_doc(rel)
        r.summary(t0)
        if mode == "rgw" and not r.ran and not r.failures:
            print("note: no block needs an S3 server")
        return 1 if r.failures else 0
    finally:
        shutil.rmtree(r.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
