"""Settings from the environment: the defaults, what each ``SYFTZMQ_*`` variable sets, and a
malformed value named in the error. Each test passes its own mapping: nothing is changed in
``os.environ``."""

from __future__ import annotations

import pytest

from syftzmq.settings import Settings


def test_an_empty_environment_gives_the_documented_defaults():
    settings = Settings.from_environ({})
    assert settings == Settings()
    assert (settings.timeout, settings.lease_seconds, settings.batch) == (None, 120.0, 64)
    assert (settings.liveness_timeout, settings.liveness_interval) == (5.0, 1.0)
    assert settings.linger_seconds == pytest.approx(0.005)
    assert (settings.key_file, settings.curve_dir, settings.worker_threads) == (None, None, None)
    assert (settings.log_level, settings.spawned_log_level) == ("INFO", "WARNING")
    assert settings.spawned_worker_threads == 1
    assert (settings.shm, settings.shm_dir) == (True, "/dev/shm")
    assert (settings.shm_threshold, settings.shm_parallel_min) == (1 << 20, 32 << 20)
    assert settings.shm_max_age == 120.0


def test_variables_of_other_programs_are_ignored():
    assert Settings.from_environ({"TIMEOUT": "1", "SYFTZMQ_TIMEOUTS": "2"}) == Settings()


@pytest.mark.parametrize("variable,text,field,value", [
    ("SYFTZMQ_TIMEOUT", "2.5", "timeout", 2.5),
    ("SYFTZMQ_LIVENESS_TIMEOUT", "2", "liveness_timeout", 2.0),
    ("SYFTZMQ_LIVENESS_INTERVAL", "0.25", "liveness_interval", 0.25),
    ("SYFTZMQ_KEY_FILE", "/etc/cluster.key", "key_file", "/etc/cluster.key"),
    ("SYFTZMQ_CURVE_DIR", "/etc/curve", "curve_dir", "/etc/curve"),
    ("SYFTZMQ_LEASE_SECONDS", "30", "lease_seconds", 30.0),
    ("SYFTZMQ_BATCH", "8", "batch", 8),
    ("SYFTZMQ_LINGER_MS", "20", "linger_seconds", 0.02),
    ("SYFTZMQ_LINGER_MS", "0", "linger_seconds", 0.0),
    ("SYFTZMQ_SHM", "0", "shm", False),
    ("SYFTZMQ_SHM", "1", "shm", True),
    ("SYFTZMQ_SHM_DIR", "/tmp/shm", "shm_dir", "/tmp/shm"),
    ("SYFTZMQ_SHM_THRESHOLD", "4096", "shm_threshold", 4096),
    ("SYFTZMQ_SHM_MAX_AGE", "7.5", "shm_max_age", 7.5),
    ("SYFTZMQ_SHM_PARALLEL_MIN", "1048576", "shm_parallel_min", 1 << 20),
])
def test_each_variable_sets_its_field_and_nothing_else(variable, text, field, value):
    settings = Settings.from_environ({variable: text})
    found = getattr(settings, field)
    assert found == (pytest.approx(value) if isinstance(value, float) else value)
    assert type(found) is type(value)
    assert settings.replace(**{field: getattr(Settings(), field)}) == Settings()


def test_the_log_level_applies_to_workers_started_here_too():
    settings = Settings.from_environ({"SYFTZMQ_LOG_LEVEL": "DEBUG"})
    assert (settings.log_level, settings.spawned_log_level) == ("DEBUG", "DEBUG")


def test_worker_threads_apply_to_workers_started_here_too():
    settings = Settings.from_environ({"SYFTZMQ_WORKER_THREADS": "3"})
    assert (settings.worker_threads, settings.spawned_worker_threads) == (3, 3)


def test_no_bound_on_observations_can_be_said_explicitly():
    assert Settings.from_environ({"SYFTZMQ_TIMEOUT": "none"}).timeout is None
    assert Settings.from_environ({"SYFTZMQ_TIMEOUT": "none"}) == Settings()


@pytest.mark.parametrize("variable", ["SYFTZMQ_TIMEOUT", "SYFTZMQ_LIVENESS_TIMEOUT",
                                      "SYFTZMQ_LIVENESS_INTERVAL", "SYFTZMQ_KEY_FILE", "SYFTZMQ_CURVE_DIR",
                                      "SYFTZMQ_LOG_LEVEL", "SYFTZMQ_LEASE_SECONDS",
                                      "SYFTZMQ_WORKER_THREADS", "SYFTZMQ_BATCH",
                                      "SYFTZMQ_LINGER_MS", "SYFTZMQ_SHM_DIR",
                                      "SYFTZMQ_SHM_THRESHOLD", "SYFTZMQ_SHM_MAX_AGE",
                                      "SYFTZMQ_SHM_PARALLEL_MIN"])
def test_an_empty_variable_means_the_default(variable):
    assert Settings.from_environ({variable: ""}) == Settings()


@pytest.mark.parametrize("variable,text,kind", [
    ("SYFTZMQ_TIMEOUT", "soon", "positive number of seconds, or none"),
    ("SYFTZMQ_TIMEOUT", "0", "positive number of seconds, or none"),
    ("SYFTZMQ_LIVENESS_TIMEOUT", "-1", "positive number of seconds"),
    ("SYFTZMQ_LIVENESS_INTERVAL", "often", "positive number of seconds"),
    ("SYFTZMQ_LEASE_SECONDS", "2m", "float"),
    ("SYFTZMQ_WORKER_THREADS", "2.5", "int"),
    ("SYFTZMQ_BATCH", "lots", "int"),
    ("SYFTZMQ_LINGER_MS", "5ms", "float"),
    ("SYFTZMQ_SHM_THRESHOLD", "1MiB", "int"),
    ("SYFTZMQ_SHM_MAX_AGE", "forever", "float"),
    ("SYFTZMQ_SHM_PARALLEL_MIN", "0x", "int"),
])
def test_a_malformed_value_names_the_variable_and_the_value(variable, text, kind):
    with pytest.raises(ValueError) as caught:
        Settings.from_environ({variable: text})
    message = str(caught.value)
    assert f"{variable}={text!r}" in message and f"not a valid {kind}" in message


def test_replace_leaves_the_original_alone():
    base = Settings.from_environ({})
    changed = base.replace(timeout=1.0, batch=2)
    assert (changed.timeout, changed.batch) == (1.0, 2)
    assert (base.timeout, base.batch) == (None, 64)
    with pytest.raises(TypeError):
        base.replace(no_such_setting=1)
