# Fail2Ban action plugin: f2b-route, resident.
#
# Bans hosts with f2b-route's blackhole host routes, as action.d/f2b-route.conf
# does, but without a process per ban: at the jail's start it runs
# `f2b-route serve --jail <jail>` as a co-process and sends it one request a
# line (`add IP`, `del IP`, `flush`, `ping`), waiting for each answer (`ok
# ...` or `err CODE MESSAGE`, CODE being f2b-route's exit code). Same routes,
# marker, guard, per-jail holds and locking as the CLI: it is the same code.
# See `f2b-route serve` in the f2b-route README.
#
# Usage, in a jail (Python 3 standard library only; fail2ban 0.11 to 1.1):
#   banaction = f2b-route.py
#   action    = f2b-route.py[config=/etc/f2b-route/other.toml, blocktype=unreachable]
# Options (fail2ban passes them as keyword arguments; a .py action reads no
# .conf or .local file, so they go in the brackets):
#   f2b_route  the binary: a path, or a name looked up in fail2ban's PATH
#              (default: f2b-route)
#   config     f2b-route's --config (default: its own, /etc/f2b-route/f2b-route.toml)
#   state_dir  f2b-route's --state-dir (default: the config's state_dir)
#   blocktype  blackhole, unreachable or prohibit (default: the config's `type`)
#   timeout    seconds to wait for one answer (default: 60)
# Other options (fail2ban's default action line passes port, protocol and
# chain) are ignored.
#
# A failure raises: fail2ban logs it as it logs a failed shell action ("Failed
# to execute ban jail ... action f2b-route ..."), with f2b-route's error line.
# An address f2b-route must never drop (local addresses, BGP peers, the
# `protect` prefixes) is such a failure, and nothing else changes. If the
# co-process has died, the next request starts it once more (and says so in
# fail2ban's log) and is sent again: every request is safe to repeat. When
# fail2ban dies, the co-process sees the end of its stdin and ends; the
# routes stay, as with the shell action, until the next start.

import os
import select
import shutil
import subprocess
import threading
import time
from collections import deque

from fail2ban.server.action import ActionBase

# The version of `f2b-route serve`'s protocol this plugin speaks.
PROTOCOL = "1"

# At the jail's start, bans with less than this many seconds left are not
# kept: fail2ban drops a restored ban that has expired by the time it gets
# to it, without an unban, so a hold kept for it would stay. If still
# valid, fail2ban's restore bans it again a moment later.
RESTORE_MARGIN = 60


class F2bRouteError(Exception):
    """f2b-route refused or failed a request, or could not be run."""


class Action(ActionBase):
    # fail2ban's rebans compare the epochs of a jail's actions: ours never
    # needs a reban (the routes outlive the co-process).
    banEpoch = 0

    def __init__(self, jail, name, f2b_route="f2b-route", config=None, state_dir=None,
                 blocktype=None, timeout="60", **kwargs):
        super(Action, self).__init__(jail, name)
        self._lock = threading.RLock()
        self._proc = None
        self._buf = b""
        self._stderr_tail = deque(maxlen=5)
        self._drainer = None
        self._configure(f2b_route, config, state_dir, blocktype, timeout)

    # --- options -----------------------------------------------------------

    def _configure(self, f2b_route, config, state_dir, blocktype, timeout):
        self._binary = f2b_route or "f2b-route"
        self._config = config or None
        self._state_dir = state_dir or None
        self._blocktype = blocktype or None
        try:
            self._timeout = float(timeout)
        except (TypeError, ValueError):
            self._timeout = None
        # Not NaN, not infinite, not 0 or less (every request would fail).
        if self._timeout is None or not 0 < self._timeout < float("inf"):
            raise ValueError("f2b-route.py: timeout must be a number of seconds above 0, not %r" % (timeout,))

    @property
    def _jail_name(self):
        return getattr(self._jail, "name", None) or str(self._jail)

    def _command(self):
        """f2b-route with its global options, as an argument list (no shell)."""
        binary = self._binary
        if "/" not in binary:
            found = shutil.which(binary)
            if not found:
                raise F2bRouteError("f2b-route.py: %r not found in PATH (%s); set f2b_route=/path/to/f2b-route"
                                    % (binary, os.environ.get("PATH", "")))
            binary = found
        cmd = [binary]
        if self._config:
            cmd += ["--config", self._config]
        if self._state_dir:
            cmd += ["--state-dir", self._state_dir]
        return cmd

    def _serve_command(self):
        cmd = self._command() + ["serve", "--jail", self._jail_name]
        if self._blocktype:
            cmd += ["--type", self._blocktype]
        return cmd

    # --- fail2ban's interface ------------------------------------------------

    def start(self):
        with self._lock:
            self._prepare_jail()
            self._spawn()

    def stop(self):
        # fail2ban calls flush() right before stop(); a second flush costs
        # little and makes sure a stopped jail withdraws its routes.
        with self._lock:
            try:
                if self._proc is not None:
                    self._request("flush")
            finally:
                self._close()

    def ban(self, aInfo):
        self._request("add " + self._address(aInfo))

    def unban(self, aInfo):
        self._request("del " + self._address(aInfo))

    def flush(self):
        self._request("flush")
        return True

    def consistencyCheck(self, beforeRepair=None):
        """`ping`: f2b-route's preflight, starting the co-process again if it died."""
        try:
            self._request("ping")
            return True
        except Exception as e:
            self._logSys.warning("[%s] f2b-route consistency check failed: %s", self._jail_name, e)
            return False

    # fail2ban's reload keeps an action that has both of these (otherwise it
    # makes a new one that is never started); the bans stay as they are.
    def clearAllParams(self):
        pass

    def reload(self, f2b_route="f2b-route", config=None, state_dir=None, blocktype=None,
               timeout="60", **kwargs):
        # serve reads f2b-route's config once: a new one, so that a reload
        # after a change of `protect` or `peers` applies it, as the shell
        # action's next command would. The bans and routes stay.
        # Never raises: fail2ban reloads its jails one after the other, and
        # an exception here would leave the rest half reloaded. A serve that
        # cannot start (a broken config) is said once here; each ban then
        # fails with f2b-route's error, as the shell action's would.
        with self._lock:
            try:
                self._configure(f2b_route, config, state_dir, blocktype, timeout)
            except ValueError as e:
                self._logSys.error("[%s] f2b-route: %s; the options before the reload are kept",
                                   self._jail_name, e)
            try:
                self._close()
                self._spawn()
                self._logSys.info("[%s] f2b-route: reloaded, serve started again (PID %d)",
                                  self._jail_name, self._proc.pid)
            except Exception as e:
                self._close()
                self._logSys.error("[%s] f2b-route: reloaded, but serve does not start: %s",
                                   self._jail_name, e)

    # --- the jail's start --------------------------------------------------

    def _prepare_jail(self):
        """`check --repair` (f2b-route can work; mend what an interrupted run
        left), then `reconcile` of this jail against what fail2ban is about
        to restore: those bans keep their routes (no unban window after a
        crash), the other holds are released. The plugin runs inside
        fail2ban, so it reads the bans as fail2ban's restore does (its
        database, the jail's current bantime, ignoreip) and hands them over
        (`--stdin`); where that fails (another fail2ban version), it lets
        f2b-route read the database as the shell action does (`--db`; without
        one, `--or-flush` releases the jail's holds). fail2ban's "Restore Ban"
        then re-adds each ban, idempotently."""
        self._run_cli(["check", "--repair"])
        args = ["reconcile", "--jail", self._jail_name]
        if self._blocktype:
            args += ["--type", self._blocktype]
        try:
            bans = self._bans_to_restore()
        except Exception as e:
            self._logSys.warning("[%s] f2b-route: cannot read the bans to restore as fail2ban does (%s):"
                                 " f2b-route reads fail2ban's database itself", self._jail_name, e)
            bans = None
        if bans is None:
            self._run_cli(args + ["--db", self._dbfile(), "--min-left", str(RESTORE_MARGIN), "--or-flush"])
        else:
            self._run_cli(args + ["--stdin"], stdin="".join(b + "\n" for b in bans) + "end\n")

    def _bans_to_restore(self):
        """The addresses fail2ban's restore (Jail.restoreCurrentBans) will ban
        again: the database's current bans of this jail, for the jail's
        bantime (unless bantime.increment), not ignored, not over. None when
        fail2ban keeps no database (the restore restores nothing then)."""
        jail = self._jail
        db = jail.database
        if db is None:
            return None
        if jail.getBanTimeExtra("increment"):
            forbantime, correct = None, jail.getMaxBanTime()
        else:
            forbantime, correct = jail.actions.getBanTime(), True
        now = time.time()
        bans = []
        for ticket in db.getCurrentBans(jail=jail, forbantime=forbantime, correctBanTime=correct):
            # The address, as the restore takes it (0.11: getIP, later the ID).
            ip = str(ticket.getIP() if hasattr(ticket, "getIP") else ticket.getID())
            # The ticket itself, as 1.1's restore asks (ignorecommand and its
            # cache key see the ticket's tags); 1.0 takes it too.
            if jail.filter.inIgnoreIPList(ticket, log_ignore=False):
                continue
            left = ticket.getBanTime(forbantime)
            since = now - ticket.getTime()
            if left != -1 and since > 0:
                left -= since
            if left != -1 and left <= RESTORE_MARGIN:
                continue
            if ip and not any(c.isspace() for c in ip):
                bans.append(ip)
        return bans

    def _dbfile(self):
        """fail2ban's database file, as the jail's server has it open; "None"
        when it keeps none."""
        db = getattr(self._jail, "database", None)
        name = getattr(db, "filename", None) if db is not None else None
        return name if name and name != ":memory:" else "None"

    def _run_cli(self, args, stdin=None):
        cmd = self._command() + args
        try:
            if stdin is None:
                done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, timeout=self._timeout)
            else:
                done = subprocess.run(cmd, input=stdin.encode(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, timeout=self._timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise F2bRouteError("f2b-route %s: %s" % (" ".join(args), e))
        text = done.stderr.decode("utf-8", "replace").strip()
        if done.returncode != 0:
            raise F2bRouteError("f2b-route %s: exit code %d: %s"
                                % (" ".join(args), done.returncode, text.splitlines()[-1] if text else ""))
        # Its summary, and its warnings (a lost ledger's routes left in place).
        for line in text.splitlines():
            self._logSys.info("[%s] f2b-route %s: %s", self._jail_name, " ".join(args), line)

    # --- the co-process ------------------------------------------------------

    def _spawn(self):
        cmd = self._serve_command()
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, bufsize=0, close_fds=True)
        except OSError as e:
            raise F2bRouteError("cannot run %s: %s" % (" ".join(cmd), e))
        self._proc, self._buf = proc, b""
        self._stderr_tail = deque(maxlen=5)
        self._drainer = threading.Thread(target=self._drain, args=(proc, self._stderr_tail),
                                         name="f2b-route-stderr-%s" % self._jail_name)
        self._drainer.daemon = True
        self._drainer.start()
        greeting = self._readline(proc)
        words = (greeting or "").split(" ")
        if words[:2] != ["f2b-route", "serve"] or len(words) < 4:
            raise F2bRouteError("f2b-route serve did not start: %s" % self._ended(proc, greeting))
        if words[2] != PROTOCOL:
            self._close()
            raise F2bRouteError("f2b-route serve speaks protocol %s, this plugin %s: %r"
                                % (words[2], PROTOCOL, greeting))
        self._logSys.debug("[%s] %s (PID %d)", self._jail_name, greeting, proc.pid)

    def _drain(self, proc, tail):
        """f2b-route's stderr (warnings) into fail2ban's log."""
        for raw in iter(proc.stderr.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                tail.append(text)
                self._logSys.warning("[%s] %s", self._jail_name, text)

    def _ended(self, proc, got=None):
        """Why the co-process gave no answer: its exit code and last words."""
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if self._drainer is not None:
            self._drainer.join(2)
        if self._proc is proc:
            self._proc = None
        why = "exit code %d" % code if code >= 0 else "killed by signal %d" % -code
        last = list(self._stderr_tail)
        if last:
            why += ": " + last[-1]
        if got:
            why += " (it wrote %r)" % got
        return why

    def _close(self):
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass

    def _readline(self, proc):
        """One line from the co-process, or None at its end; waits at most
        the timeout (then kills it)."""
        fd = proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        deadline = time.monotonic() + self._timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                # Gone for good before anything else is asked: a late answer
                # must never be read as the next request's.
                proc.kill()
                proc.wait()
                if self._proc is proc:
                    self._proc = None
                self._buf = b""
                raise F2bRouteError("f2b-route serve (PID %d) gave no answer in %g s: killed"
                                    % (proc.pid, self._timeout))
            if not poller.poll(left * 1000):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", "replace")

    def _exchange(self, request):
        """Send one request to the running co-process; its answer, or None if
        the co-process has ended."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return None
        data = (request + "\n").encode()
        try:
            while data:
                data = data[proc.stdin.write(data):]
        except (BrokenPipeError, OSError):
            return None
        return self._readline(proc)

    def _request(self, request):
        with self._lock:
            answer = self._exchange(request)
            if answer is None:
                # Dead (killed, crashed) or never started: once more, with a
                # new one. Every request is safe to repeat.
                old = self._proc
                why = "had ended (%s)" % self._ended(old) if old is not None else "was not running"
                self._spawn()
                self._logSys.warning("[%s] f2b-route serve %s: started it again (PID %d)",
                                     self._jail_name, why, self._proc.pid)
                answer = self._exchange(request)
                if answer is None:
                    raise F2bRouteError("f2b-route serve ended again on %r: %s"
                                        % (request, self._ended(self._proc)))
        if answer.startswith("ok"):
            self._logSys.debug("[%s] f2b-route %s: %s", self._jail_name, request, answer)
            return answer
        parts = answer.split(" ", 2)
        if parts[0] == "err" and len(parts) == 3:
            raise F2bRouteError("f2b-route %s for %s: exit code %s: %s"
                                % (request, self._jail_name, parts[1], parts[2]))
        raise F2bRouteError("f2b-route %s: unexpected answer %r" % (request, answer))

    def _address(self, aInfo):
        """The ticket's address, as one word: a request is one line, so
        nothing that could end it or split it is sent."""
        ip = str(aInfo["ip"])
        if not ip or any(c.isspace() or not c.isprintable() for c in ip):
            raise F2bRouteError("bad address %r: not sent to f2b-route (a request is one line, one word)"
                                % (ip[:64],))
        return ip
