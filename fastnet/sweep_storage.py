"""Opening a sweep's Optuna storage: SQLite or any SQLAlchemy URL, safely when many workers start
at the same moment (a lock around the creation of the tables and the study), and with errors
that name the URL (its password left out)."""

import contextlib
import time
import warnings
from pathlib import Path


class SweepError(ValueError):
    """Bad sweep arguments, or a storage or study that cannot be used."""


# Creating a storage's tables and a study is not safe to race: workers started together on a new
# database collide (optuna#1092, #4621, #820). fastnet workers take a lock for that first step:
# a file lock beside an SQLite file, a PostgreSQL advisory lock (per database) on a server.
ADVISORY_LOCK_KEY = 0x6661_7374_6E65_74  # "fastnet": the pg_advisory_lock key of study creation
CREATION_LOCK_TIMEOUT = 300  # seconds a worker waits for another one's creation step
SQLITE_BUSY_TIMEOUT = 60  # seconds an SQLite connection waits for another writer (Python's default: 5)
CREATION_RETRIES = 5  # other databases: bounded retries on exactly the errors of a creation race


def _reason(e):
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else type(e).__name__}"


def _cannot_open(url, e):
    return SweepError(f"--storage {redact(url)}: cannot open it ({_reason(e)})")


def _creation_race(e):
    """Whether ``e`` is what two workers creating the same tables or study at once raise, and
    nothing else (a bad URL, a password, a host that does not answer are never retried)."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    text = str(e).lower()
    if isinstance(e, IntegrityError):
        return True
    return isinstance(e, (OperationalError, ProgrammingError)) and ("already exists" in text or "locked" in text)


@contextlib.contextmanager
def creation_lock(url):
    """Held while a worker creates or joins the storage's tables and the study: one fastnet worker
    at a time, on the same SQLite file (a ``.lock`` file beside it) or the same PostgreSQL
    database (an advisory lock, released when this connection ends, even by ``kill -9``)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    from sqlalchemy.pool import NullPool

    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
    except (ArgumentError, ValueError) as e:
        raise _cannot_open(url, e) from None
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        import filelock

        lock = filelock.FileLock(str(Path(parsed.database).resolve()) + ".lock", timeout=CREATION_LOCK_TIMEOUT)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise SweepError(f"--storage {redact(url)}: another worker held {lock.lock_file} for "
                             f"{CREATION_LOCK_TIMEOUT} s") from None  # fmt: skip
        except OSError as e:  # no such directory, no permission
            raise _cannot_open(url, e) from None
        try:
            yield
        finally:
            lock.release()
    elif backend == "postgresql":
        try:
            engine = create_engine(url, poolclass=NullPool)
            connection = engine.connect()
        except Exception as e:  # no driver, no server, a wrong password: at once, in one line
            raise _cannot_open(url, e) from None
        try:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            yield
        finally:
            connection.close()  # ends the session, and with it the advisory lock
            engine.dispose()
    else:
        yield


def open_storage(url, heartbeat):
    """An Optuna RDB storage at ``url`` with heartbeats every ``heartbeat`` s (stale after 3×);
    stale trials are queued again with their parameters. Raises SweepError if it cannot connect.
    Call it inside ``creation_lock(url)`` when other workers may be starting too."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.engine import make_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats and their retries are marked experimental; and we record the heartbeats ourselves
    # (_Heartbeat) because trials run K at a time through ask and tell, not through Study.optimize.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    engine_kwargs = {"pool_pre_ping": True}
    try:
        if make_url(url).get_backend_name() == "sqlite":  # many workers writing: wait, do not fail
            engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
    except Exception as e:
        raise _cannot_open(url, e) from None
    for attempt in range(CREATION_RETRIES):
        try:
            return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                              engine_kwargs=engine_kwargs)  # fmt: skip
        except Exception as e:  # SQLAlchemy's errors: bad URL, no driver, no server
            if not _creation_race(e) or attempt == CREATION_RETRIES - 1:
                raise _cannot_open(url, e) from None
            time.sleep(0.5 + attempt)


def redact(url):
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':')[0]}@{host}"
    return url
