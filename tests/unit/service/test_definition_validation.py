"""Service definition files are validated like user input: every error, named by file and field."""

import signal

import pytest

from talos_init.service.definition import CAPABILITIES, InvalidDefinitions, parse
from talos_init.service.loader import load_directory


def errors_of(data, source="<memory>"):
    d, errors = parse(data, source)
    assert d is None
    return [str(e) for e in errors]


def test_brief_sketch_parses_unchanged():
    """The sketch every engineer writes to is a valid definition."""
    d, errors = parse({
        "id": "networkd", "description": "Network configuration through netlink",
        "argv": ["/usr/bin/python3.11", "-I", "-m", "talos_init.networkd"],
        "environment": {}, "depends_on": ["udevd"],
        "conditions": [{"file_exists": "/run/talos/config.json"}],
        "readiness": {"notify": True}, "restart": "always",
        "stop": {"signal": "SIGTERM", "timeout": 10},
        "confinement": {"oom_score_adj": -500}})
    assert errors == []
    assert d.depends_on == ("udevd",) and d.readiness.kind == "notify"
    assert d.stop_signal == signal.SIGTERM and d.stop_timeout == 10.0
    assert d.confinement.oom_score_adj == -500 and d.confinement.cgroup == "system"


def test_every_error_is_reported_with_its_path():
    """Unknown keys, wrong types and bad values each give one error naming the field."""
    errs = errors_of({
        "id": "x", "argv": "not-a-list", "colour": "blue",
        "readiness": {"probe": {"http": "https://example.com/", "period": -1, "bogus": 1}},
        "restart": "sometimes", "stop": {"signal": "SIGKILL", "timeout": "10"},
        "conditions": [{"moon_phase": "full"}],
        "confinement": {"capabilities": {"drop": ["cap_fly"]}, "oom_score_adj": 5000},
    }, "services/x.yaml")
    expected = [
        "services/x.yaml: colour: unknown field",
        "services/x.yaml: argv: must be a list of strings, got a string",
        "services/x.yaml: conditions[0].moon_phase: unknown condition",
        "services/x.yaml: readiness.probe.bogus: unknown field",
        "services/x.yaml: readiness.probe.http: must be an http:// URL (no TLS in PID 1)",
        "services/x.yaml: readiness.probe.period: must be >= 0.01, got -1",
        "services/x.yaml: restart: must be one of always, on-failure, never, got 'sometimes'",
        "services/x.yaml: stop.signal: SIGKILL cannot be the stop signal",
        "services/x.yaml: stop.timeout: must be a number of seconds, got a string",
        "services/x.yaml: confinement.oom_score_adj: must be between -1000 and 1000, got 5000",
        "services/x.yaml: confinement.capabilities.drop[0]: unknown capability 'cap_fly'",
    ]
    for want in expected:
        assert any(e.startswith(want) for e in errs), (want, errs)
    assert len(errs) == len(expected), errs


def test_nice_is_an_integer_from_minus_20_to_19():
    """confinement.nice takes the kernel's range; anything else names file and field."""
    for value in (-20, 0, 19):
        d, errors = parse({"id": "n", "argv": ["/bin/n"], "confinement": {"nice": value}})
        assert not errors and d.confinement.nice == value
    d, errors = parse({"id": "n", "argv": ["/bin/n"]})
    assert d.confinement.nice is None  # absent: the process keeps PID 1's nice
    for value, why in ((-21, "must be between -20 and 19, got -21"),
                       (20, "must be between -20 and 19, got 20"),
                       ("5", "must be an integer, got a string"),
                       (True, "must be an integer, got a boolean"),
                       (1.5, "must be an integer, got a number")):
        errs = errors_of({"id": "n", "argv": ["/bin/n"], "confinement": {"nice": value}},
                         "services/n.yaml")
        assert errs == [f"services/n.yaml: confinement.nice: {why}"], errs


def test_cpu_weight_is_cgroup_v2s_range_and_excludes_nice():
    """confinement.cpu_weight takes cpu.weight's 1..10000; with nice as well it is refused (both
    would set the same cgroup file)."""
    d, errors = parse({"id": "n", "argv": ["/bin/n"], "confinement": {"cpu_weight": 400}})
    assert not errors and d.confinement.cpu_weight == 400 and d.confinement.nice is None
    for conf, want in (({"cpu_weight": 0}, "confinement.cpu_weight: must be between 1 and 10000, got 0"),
                       ({"cpu_weight": 10001},
                        "confinement.cpu_weight: must be between 1 and 10000, got 10001"),
                       ({"cpu_weight": 400, "nice": 5},
                        "confinement.cpu_weight: set nice or cpu_weight, not both")):
        errs = errors_of({"id": "n", "argv": ["/bin/n"], "confinement": conf}, "services/n.yaml")
        assert len(errs) == 1 and errs[0].startswith(f"services/n.yaml: {want}"), errs


def test_probe_host_must_be_an_address_and_placeholders_well_formed():
    """PID 1 never resolves names, and a stray '$' is caught at load."""
    errs = errors_of({"id": "k", "argv": ["/bin/k", "--ip=${config:machine..x}", "cost$5"],
                      "readiness": {"probe": {"tcp": "kube.local:10250"}}})
    assert any("readiness.probe.tcp: host must be an IP address or localhost" in e for e in errs)
    assert any("argv[1]: bad config path 'machine..x'" in e for e in errs)
    assert any("argv[2]: a lone '$' must be written '$$'" in e for e in errs)


def test_id_must_match_file_name_and_argv0_be_absolute():
    """The id names the file, and argv[0] is an absolute path (no PATH search)."""
    errs = errors_of({"id": "apid", "argv": ["apid"]}, "services/api.yaml")
    assert "services/api.yaml: id: must match the file name ('api'), got 'apid'" in errs
    assert any(e.startswith("services/api.yaml: argv[0]: must be an absolute path") for e in errs)


def test_capabilities_sizes_and_defaults():
    """keep/drop lists become capability numbers; sizes take Ki/Mi/Gi."""
    d, errors = parse({"id": "c", "argv": ["/bin/c"], "logs": {"ring_bytes": "1Mi", "max_line": 200},
                       "confinement": {"capabilities": {"drop": ["CAP_SYS_ADMIN", "net_raw"]},
                                       "memory_max": "512Mi"}})
    assert not errors
    kept = d.confinement.kept_capabilities()
    assert CAPABILITIES["sys_admin"] not in kept and CAPABILITIES["net_raw"] not in kept
    assert CAPABILITIES["chown"] in kept
    assert d.confinement.memory_max == 512 * 1024**2 and d.log_ring_bytes == 1024**2
    assert d.restart == "always" and d.readiness.kind == "none" and d.backoff.initial == 0.1


def test_directory_reports_all_files_together(tmp_path):
    """Broken YAML, a duplicate id and a field error in two files all come back at once."""
    (tmp_path / "a.yaml").write_text("id: a\nargv: [/bin/a]\nrestart: [\n")
    (tmp_path / "b.yaml").write_text("id: b\nargv: [/bin/b]\ndepends_on: [a]\ntimeout: 3\n")
    (tmp_path / "c.yaml").write_text("id: c\nargv: [/bin/c]\ndepends_on: [b]\n")
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(InvalidDefinitions) as info:
        load_directory(tmp_path)
    errs = [str(e) for e in info.value.errors]
    assert len(errs) == 2, errs
    assert errs[0].startswith(f"{tmp_path}/a.yaml: not valid YAML")
    assert errs[1].startswith(f"{tmp_path}/b.yaml: timeout: unknown field")
    # c depends on b, which is broken: that is not also an "unknown dependency".


def test_done_if_is_for_one_shots_only():
    """A daemon cannot be 'done' without running: named at the field."""
    errs = errors_of({"id": "d", "argv": ["/bin/d"], "done_if": [{"file_exists": "/run/x"}]},
                     "d.yaml")
    assert any("done_if" in e and "one-shot" in e for e in errs), errs
    d, errors = parse({"id": "o", "argv": ["/bin/o"], "readiness": {"exit": True},
                       "done_if": [{"file_exists": "/run/x"}]})
    assert errors == [] and [str(c) for c in d.done_if] == ["file_exists /run/x"]

