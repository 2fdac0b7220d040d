"""fastnet sweep: Optuna studies on SQLite and on a real PostgreSQL server, workers in processes."""

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from glob import glob
from pathlib import Path

import optuna
import pytest
from test_cli import SUBSET

from fastnet.sweep import Range, SweepError

QUICK = ["--dataset", SUBSET, "--hidden", "20,20", "--epochs", "2", "--stack", "2", "--no-progress"]


def sweep(*args, **popen):
    """A `fastnet sweep` process (started; ``popen`` goes to Popen)."""
    return subprocess.Popen([sys.executable, "-m", "fastnet", "sweep", *QUICK, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)  # fmt: skip


def finish(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def trials_of(study, storage):
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def check_every_trial_once(trials, expected, epochs=2):
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == expected
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    params = {(t.params["lr"], t.params["weight_decay"]) for t in complete}
    assert len(params) == expected  # no two finished trials share their parameters
    assert all(len(t.user_attrs["val_acc"]) == epochs for t in complete)
    assert all(t.intermediate_values == dict(enumerate(t.user_attrs["val_acc"])) for t in complete)


@pytest.mark.parametrize("text,words", [
    ("1e-2:1e-6", "LOW must be below HIGH"), ("0:1:log", "a log range needs LOW > 0"), ("1e-3", "expected LOW:HIGH"),
    ("a:b", "must be numbers"), ("1:2:lin", "expected LOW:HIGH"), ("nan:1", "LOW must be below HIGH"),
])  # fmt: skip
def test_malformed_ranges(text, words):
    with pytest.raises(SweepError, match=words):
        Range.parse(text, "--lr")


@pytest.mark.parametrize("args,words", [
    (["--lr", "1e-2:1e-6"], "--lr '1e-2:1e-6': LOW must be below HIGH"),
    (["--storage", "postgresql://nobody@127.0.0.1:1/nothing"], "--storage postgresql://nobody@127.0.0.1:1/nothing"),
    (["--storage", "nosuchdb://x"], "cannot open it"),
    (["--join", "--study", "nobody-made-this"], "no such study"),
    (["--validation", "1.5"], "--validation 1.5"),
    (["--layers", "conv4x3,afine10"], "'afine10' is not a layer"),
    (["--layers", "affine10", "--net", "simple-conv"], "--layers gives the whole network"),
])  # fmt: skip
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, words):
    out = tmp_path / "out"
    storage = [] if "--storage" in args else ["--storage", f"sqlite:///{tmp_path / 'ok.db'}"]
    code, stdout, stderr = finish(sweep("--out", str(out), "--trials", "1", *storage, *args))
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("fastnet sweep: error:"), stderr
    assert not out.exists()


def test_two_workers_share_one_sqlite_study_and_resume(tmp_path):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    workers = [
        sweep("--storage", db, "--study", "s", "--trials", "3", "--out", str(tmp_path / f"w{i}")) for i in (0, 1)
    ]
    for worker in workers:
        code, out, err = finish(worker)
        assert code == 0, err
    check_every_trial_once(trials_of("s", db), 6)
    code, out, err = finish(sweep("--storage", db, "--study", "s", "--trials", "2", "--out", str(tmp_path / "w2")))
    assert code == 0 and "8 finished trials" in out, err  # resumed: the same study, two more
    assert (tmp_path / "w2" / "sweep.png").exists() and (tmp_path / "w2" / "trials.csv").read_text().count("\n") == 9


# A worker of the Python API that waits for a common start time after its imports, so that all of
# them reach the storage's creation at the same instant (the race users hit starting workers with &).
TOGETHER = """
import sys, time
from fastnet import sweep
from fastnet.cli import load_dataset
url, out, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
train, test, _ = load_dataset(sys.argv[4])
settings = sweep.Settings(hidden=[8], train_size=100, epochs=1, batch_size=20)
time.sleep(max(0.0, start - time.time()))
study = sweep.run("together", 1, out, storage_url=url, settings=settings, stack=1, data=(train, test), log=None)
print(sweep.summary(study))
"""


def start_together(urls, per_url, tmp_path, delay=4.0):
    """``per_url`` Python-API workers on each URL, all released at the same moment."""
    start = time.time() + delay
    return [subprocess.Popen([sys.executable, "-c", TOGETHER, url, str(tmp_path / f"out{i}-{k}"), str(start), SUBSET],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, url in enumerate(urls) for k in range(per_url)]  # fmt: skip


def test_eight_workers_started_together_on_new_sqlite_files(tmp_path):
    """Before the creation lock, 0-2 of 4 CLI workers died on 'table ... already exists'."""
    urls = [f"sqlite:///{tmp_path / f'new{i}.db'}" for i in range(3)]
    workers = start_together(urls, 8, tmp_path)
    for worker in workers:
        code, out, err = finish(worker)
        assert code == 0, err
    for url in urls:
        check_every_trial_once(trials_of("together", url), 8, epochs=1)


def test_a_study_with_other_settings_is_still_refused_at_once(tmp_path):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    code, out, err = finish(sweep("--storage", db, "--study", "s", "--trials", "1", "--out", str(tmp_path / "a")))
    assert code == 0, err
    began = time.time()
    code, out, err = finish(sweep("--storage", db, "--study", "s", "--trials", "1", "--epochs", "3",
                                  "--out", str(tmp_path / "b")))  # fmt: skip
    assert code == 2 and "exists with other settings" in err and len(err.strip().splitlines()) == 1, err
    assert time.time() - began < 30  # no retries, no waiting on a lock


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_the_study_opens_in_optunas_dashboard(tmp_path):
    """A finished study read back through optuna-dashboard's HTTP API: values, parameters and the
    per-epoch validation accuracies as intermediate values."""
    pytest.importorskip("optuna_dashboard", reason='pip install -e ".[dashboard]"')
    db = f"sqlite:///{tmp_path / 'study.db'}"
    code, out, err = finish(sweep("--storage", db, "--study", "watched", "--trials", "2", "--out", str(tmp_path)))
    assert code == 0, err
    assert f"optuna-dashboard {db}" in out
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "import sys, optuna_dashboard; "
                               "optuna_dashboard.run_server(sys.argv[1], host='127.0.0.1', port=int(sys.argv[2]))",
                               db, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.time() + 60
        while True:
            try:
                studies = get_json(base + "/api/studies")["study_summaries"]
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "the dashboard did not start"
                time.sleep(0.3)
        (summary,) = [s for s in studies if s["study_name"] == "watched"]
        detail = get_json(f"{base}/api/studies/{summary['study_id']}")
        with urllib.request.urlopen(base + "/dashboard", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        server.terminate()
        server.wait(10)
    stored = {t.number: t for t in trials_of("watched", db)}
    assert sorted(t["number"] for t in detail["trials"]) == sorted(stored) and len(stored) == 2
    for trial in detail["trials"]:
        mine = stored[trial["number"]]
        assert trial["state"] == "Complete" and trial["values"] == [mine.value]
        assert {p["name"]: float(p["param_external_value"]) for p in trial["params"]} == mine.params
        assert [(v["step"], v["value"]) for v in trial["intermediate_values"]] == list(
            enumerate(mine.user_attrs["val_acc"])
        )


def test_default_storage_is_a_file_in_out(tmp_path):
    code, out, err = finish(sweep("--out", str(tmp_path), "--trials", "2", "--study", "mine"))
    assert code == 0, err
    assert (tmp_path / "mine.db").exists() and "2 finished trials" in out


# -- a real PostgreSQL server, started for these tests --------------------------------------------


def _pg_bin(name):
    found = shutil.which(name) or next(iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    return found


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on a free local port in a temporary directory; its URL. Stopped after."""
    pytest.importorskip("psycopg", reason='the PostgreSQL driver: pip install -e ".[cluster]"')
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does it)")
    root = Path(tempfile.mkdtemp(prefix="fastnet-pg-"))  # not pytest's: the server's user must reach it
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        os.chmod(root, 0o777)
        os.chmod(sock, 0o777)
        as_user = ["runuser", "-u", "postgres", "--"]
    user = "postgres" if as_user else getpass.getuser()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", user, "--auth=trust"], check=True, capture_output=True)
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "start", "-o", options],
                   check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run([*as_user, _pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", user,
                        "sweeps"], check=True, capture_output=True)  # fmt: skip
        yield f"postgresql://{user}@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_study_on_postgresql(postgres, tmp_path):
    workers = [sweep("--storage", postgres, "--study", "pg", "--trials", "4", "--out", str(tmp_path / f"w{i}"))
               for i in (0, 1)]  # fmt: skip
    for worker in workers:
        code, out, err = finish(worker)
        assert code == 0, err
    check_every_trial_once(trials_of("pg", postgres), 8)


@pytest.fixture
def fresh_database(postgres):
    """A new, empty database on the test server; its URL."""
    import psycopg

    name = f"fresh_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(postgres.replace("postgresql://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.rsplit("/", 1)[0] + "/" + name


def test_eight_workers_started_together_on_a_new_postgresql_database(fresh_database, tmp_path):
    workers = [sweep("--storage", fresh_database, "--study", "pg-together", "--trials", "1", "--stack", "1",
                     "--out", str(tmp_path / f"w{i}")) for i in range(8)]  # fmt: skip
    for worker in workers:
        code, out, err = finish(worker)
        assert code == 0, err
    check_every_trial_once(trials_of("pg-together", fresh_database), 8)


def test_a_missing_database_or_user_fails_at_once(postgres, tmp_path):
    base = postgres.rsplit("/", 1)[0]
    for url, words in [(base + "/no_such_database", "no_such_database"),
                       (base.replace("//postgres@", "//nobody@").replace(f"//{getpass.getuser()}@", "//nobody@")
                        + "/sweeps", "nobody")]:  # fmt: skip
        began = time.time()
        code, out, err = finish(sweep("--storage", url, "--trials", "1", "--out", str(tmp_path / "x")))
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and "cannot open it" in lines[0] and words in lines[0], err
        assert time.time() - began < 30


def test_a_killed_worker_leaves_nothing_running(postgres, tmp_path):
    """kill -9 mid-trial: its trials' heartbeats go stale; the next worker fails them, runs them
    again with the same parameters, and the study ends with nothing left running."""
    slow = ["--epochs", "400", "--heartbeat", "1"]
    victim = sweep("--storage", postgres, "--study", "killed", "--trials", "2", "--out", str(tmp_path / "v"), *slow)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            running = [t for t in trials_of("killed", postgres) if t.state == optuna.trial.TrialState.RUNNING]
        except KeyError:
            running = []
        if len(running) == 2:
            break
        time.sleep(0.5)
    assert len(running) == 2, "the worker never started its trials"
    time.sleep(1)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    time.sleep(4)  # three missed heartbeats
    code, out, err = finish(
        sweep(
            "--storage", postgres, "--study", "killed", "--join", "--trials", "2", "--out", str(tmp_path / "r"), *slow
        )
    )  # the same settings: they join it
    assert code == 0, err
    trials = trials_of("killed", postgres)
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 2 and states.count(optuna.trial.TrialState.COMPLETE) == 2
    assert not [s for s in states if s in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    failed = {(t.params["lr"], t.params["weight_decay"]) for t in trials if t.state == optuna.trial.TrialState.FAIL}
    redone = {(t.params["lr"], t.params["weight_decay"]) for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert failed == redone


def test_a_sweep_of_convnets_on_sqlite(tmp_path):
    """--net simple-conv: each trial a SimpleConvNet with its own learning rate and weight decay,
    K = 2 per NetStack, the study's settings naming the network."""
    code, out, err = finish(sweep("--net", "simple-conv", "--out", str(tmp_path), "--trials", "3", "--study", "conv",
                                  "--train-size", "60", "--batch-size", "20"))  # fmt: skip
    assert code == 0, err
    trials = trials_of("conv", f"sqlite:///{tmp_path / 'conv.db'}")
    check_every_trial_once(trials, 3)
    assert json.loads(optuna.load_study(study_name="conv", storage=f"sqlite:///{tmp_path / 'conv.db'}")
                      .user_attrs["settings"])["net"] == "simple-conv"  # fmt: skip


def test_a_sweep_of_a_network_of_your_own_design(tmp_path):
    """--layers: each trial a Sequential of those layers, the trial's weight decay on every affine and
    conv layer, the study's settings naming the layers."""
    code, out, err = finish(sweep("--layers", "conv3x3p1,bn,relu,pool2,affine10", "--out", str(tmp_path), "--trials",
                                  "3", "--study", "own", "--train-size", "60", "--batch-size", "20"))  # fmt: skip
    assert code == 0, err
    storage = f"sqlite:///{tmp_path / 'own.db'}"
    trials = trials_of("own", storage)
    check_every_trial_once(trials, 3)
    settings = json.loads(optuna.load_study(study_name="own", storage=storage).user_attrs["settings"])
    assert settings["layers"] == "conv3x3p1,bn,relu,pool2,affine10"
    from fastnet.sweep import Settings, new_net

    net = new_net(Settings(layers=settings["layers"]), 784, 0.25, seed=0)
    assert [layer.args.get("weight_decay") for layer in net.layers] == [0.25, None, None, None, 0.25]
    assert net.input_dim == (1, 28, 28)
