"""The click group's error handling: one line on stderr and the exit code for every way a
run can end (a usage error, a user's mistake, Ctrl-C, SIGTERM, a model that exits, a bug)."""

import contextlib
import sys

import click

from archcost.cli.common import UserError, say, user_errors


class Group(click.Group):
    """Turns usage errors and UserError into one line on stderr (exit 2), no traceback."""

    def main(self, args=None, prog_name=None, **kwargs):
        import os

        # The CLI draws its plots to files with Agg: a desktop backend named in the
        # environment (or a misspelt one) has no use here and must not stop a run.
        os.environ.pop("MPLBACKEND", None)
        if sys.stdout is None:  # started with stdout closed (`>&-`): Python has no stream to write to
            say("archcost: error: cannot write the output: standard output is closed")
            sys.exit(2)
        with terminated_as_interrupt():
            try:
                rv = self._main(args, prog_name, **kwargs)
                sys.stdout.flush()
            except OSError as e:
                if not is_write_error(e):
                    raise
                silence_stdout()
                say(f"archcost: error: cannot write the output: {e.strerror or e}")
                sys.exit(2)
        sys.exit(rv)

    def _main(self, args, prog_name, **kwargs):
        try:
            rv = super().main(args=args, prog_name=prog_name or "archcost", standalone_mode=False, **kwargs)
        except click.exceptions.Exit as e:
            return e.exit_code
        except click.exceptions.Abort as e:
            cause = e.__cause__ or e.__context__
            if isinstance(cause, KeyboardInterrupt):
                interrupted(cause)
            click.echo("archcost: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt as e:
            interrupted(e)
        except click.UsageError as e:
            no_args = getattr(click.exceptions, "NoArgsIsHelpError", None)
            if (no_args and isinstance(e, no_args)) or (e.ctx and e.message == e.ctx.get_help()):
                click.echo(e.ctx.get_help(), err=True)  # a bare command: its help, as written
                sys.exit(2)
            where = e.ctx.command_path if e.ctx else "archcost"
            say(f"{where}: error: {e.format_message()} (see '{where} --help')")
            sys.exit(2)
        except UserError as e:
            say(f"archcost: error: {e}")
            sys.exit(2)
        except click.ClickException as e:
            say(f"archcost: error: {e.format_message()}")
            sys.exit(e.exit_code)
        except BrokenPipeError:
            silence_stdout()
            sys.exit(0)
        except Exception as e:  # never a traceback: one line, and how to see the traceback
            import os

            if os.environ.get("ARCHCOST_TRACEBACK"):
                raise
            if isinstance(e, user_errors()):  # e.g. a report write that failed (full disk)
                say(f"archcost: error: {e}")
                sys.exit(2)
            if isinstance(e, OSError) and is_write_error(e):
                silence_stdout() if e.filename is None else None
                say(f"archcost: error: cannot write {str(e.filename) + ': ' if e.filename else 'the output: '}"
                    f"{e.strerror or e}")
                sys.exit(2)
            from archcost.count.limits import is_out_of_memory, out_of_memory_message

            if is_out_of_memory(e):
                say(f"archcost: error: {out_of_memory_message(e)}")
                sys.exit(2)
            first = (str(e).strip().splitlines() or [""])[0][:300]
            say(f"archcost: internal error: {type(e).__name__}: {first} (a bug: please report it with "
                "the command; ARCHCOST_TRACEBACK=1 shows the traceback)")
            sys.exit(3)
        return rv if isinstance(rv, int) else 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (CI cancel, ``docker stop``), raised where the run is, so that every
    ``finally`` (temp files, file sets) runs as for Ctrl-C; exit 143."""


def interrupted(exc):
    if isinstance(exc, Terminated):
        click.echo("archcost: terminated; reports already on disk were left as they were", err=True)
        sys.exit(143)
    click.echo("archcost: interrupted; reports already on disk were left as they were", err=True)
    sys.exit(130)


@contextlib.contextmanager
def terminated_as_interrupt():
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process as usual
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def is_write_error(exc: OSError) -> bool:
    """A write the system refused (a full disk or quota, a file too large, a read-only or
    forbidden place): the user's environment, not a bug."""
    import errno

    return exc.errno in {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                         errno.EIO, errno.EPIPE}


def silence_stdout():
    """Point stdout at /dev/null so that the interpreter's last flush of what could not be
    written does not print a second error."""
    import os

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass
