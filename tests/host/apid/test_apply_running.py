"""apply-config on a configured node, in-process on real files: modes, the refusal of a
change that needs a reboot, nothing acting before the reply, one apply at a time, a try
that reverts, and the store on STATE (a directory here)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from talos_init.apid.configapply import RunningApply
from talos_init.apid.protocol import ApiError
from talos_init.paths import Paths
from talos_init.userdata import store, validate
from talos_init.userdata.configstore import Store
from tests.unit.userdata.pki import fill

ROOT = Path(__file__).resolve().parents[3]
BASE = fill((ROOT / "tests/unit/userdata/fixtures/multidoc.yaml").read_text())


def edited(change) -> str:
    """BASE with ``change`` applied to its v1alpha1 document (and the others, by kind)."""
    docs = list(yaml.safe_load_all(BASE))
    change(docs[0], {d.get("kind"): d for d in docs[1:]})
    return yaml.safe_dump_all(docs, sort_keys=False)


def hostname(name: str):
    def change(doc: dict, kinds: dict) -> None:
        kinds["HostnameConfig"]["hostname"] = name  # the fixture's hostname document
    return change


class Node:
    def __init__(self, tmp: Path, with_state: bool = True) -> None:
        self.paths = Paths(tmp)
        self.store = Store(tmp / "state") if with_state else None
        res = validate.parse(BASE)
        store.write_config(BASE.encode(), res.config.effective, self.paths.config,
                           self.paths.effective_config)
        self.restarts: list[str] = []
        self.restart_gate: asyncio.Event | None = None
        self.apply = RunningApply(self.paths, self._restart, find_state=lambda: self.store)

    async def _restart(self, sid: str) -> None:
        if self.restart_gate is not None:
            await self.restart_gate.wait()
        self.restarts.append(sid)

    def effective(self) -> dict:
        return json.loads(self.paths.effective_config.read_text())

    async def call(self, text: str, **params) -> dict:
        """As the server does: the call, then (reply written) after_reply."""
        reply = await self.apply({"config": text, **params})
        self.apply.after_reply()
        if self.apply.acting is not None:
            await self.apply.acting
        return reply


def run(coro):
    return asyncio.run(coro)


def test_auto_keeps_the_config_and_applies_it_only_after_the_reply(tmp_path):
    node = Node(tmp_path)

    async def go():
        text = edited(lambda d, k: (hostname("worker-8")(d, k),
                                    d["machine"].__setitem__("sysctls", {"vm.max_map_count": "262144"}),
                                    k["KubeNodeConfig"].__setitem__("labels", {"zone": "b"})))
        reply = await node.apply({"config": text, "mode": "auto"})
        # The reply exists; nothing acted yet: /run/talos is the old config, nothing restarted.
        assert node.effective()["machine"]["network"]["hostname"] == "worker-7"
        assert node.restarts == [] and node.apply.lock.locked()
        node.apply.after_reply()
        await node.apply.acting
        return reply

    reply = run(go())
    assert sorted(c["path"] for c in reply["changes"]) == [
        "machine.network.hostname", "machine.nodeLabels", "machine.sysctls.vm.max_map_count"]
    assert all(c["live"] for c in reply["changes"]) and reply["reboot_needed"] == []
    assert reply["restart"] == ["machine-setup", "kubelet"] and reply["version"] == 1
    assert node.effective()["machine"]["network"]["hostname"] == "worker-8"
    assert node.restarts == ["machine-setup", "kubelet"]
    assert node.store.load()["mode"] == "auto" and b"worker-8" in node.store.load()["config"]
    assert node.paths.config_source.read_text() == "store\n"
    assert not node.apply.lock.locked()


def test_a_change_needing_a_reboot_is_refused_in_auto_with_the_hint(tmp_path):
    node = Node(tmp_path)
    text = edited(lambda d, k: d["machine"]["install"].__setitem__("disk", "/dev/vdb"))
    with pytest.raises(ApiError) as e:
        run(node.call(text, mode="auto"))
    assert e.value.code == "failed_precondition"
    assert "machine.install.disk cannot change without a reboot" in e.value.message
    assert "--mode staged, then osctl reboot" in e.value.message
    assert node.store.load() is None and node.restarts == []
    assert not node.apply.lock.locked()
    reply = run(node.call(text, mode="staged"))
    assert reply["reboot_needed"] == ["machine.install.disk"] and reply["restart"] == []
    assert node.store.staged() is not None and node.store.load() is None
    assert node.effective()["machine"]["install"]["disk"] == "/dev/sda"  # nothing changed now


def test_dry_run_shows_changes_and_restarts_and_applies_nothing(tmp_path):
    node = Node(tmp_path)
    text = edited(lambda d, k: k["KubeNodeConfig"].__setitem__("labels", {"zone": "b"}))
    reply = run(node.call(text, mode="auto", dry_run=True))
    assert reply["dry_run"] and reply["restart"] == ["kubelet"]
    assert [c["path"] for c in reply["changes"]] == ["machine.nodeLabels"]
    assert node.restarts == [] and node.store.load() is None
    bad = edited(lambda d, k: d["machine"]["install"].__setitem__("disk", "/dev/vdb"))
    assert "would be refused" in run(node.call(bad, dry_run=True))["message"]


def test_an_invalid_config_is_refused_with_its_problems(tmp_path):
    node = Node(tmp_path)
    with pytest.raises(ApiError) as e:
        run(node.call(BASE.replace("type: worker", "type: wroker"), source="w.yaml"))
    assert e.value.code == "invalid_config" and "w.yaml:5:" in e.value.message
    assert node.effective()["machine"]["type"] == "worker"


def test_two_applies_at_once_one_is_refused_and_nothing_is_lost(tmp_path):
    node = Node(tmp_path)

    async def go():
        node.restart_gate = asyncio.Event()
        first = edited(lambda d, k: k["KubeNodeConfig"].__setitem__("labels", {"zone": "a"}))
        second = edited(lambda d, k: k["KubeNodeConfig"].__setitem__("labels", {"zone": "b"}))
        await node.apply({"config": first, "mode": "auto"})
        node.apply.after_reply()  # acting, held at the kubelet restart
        with pytest.raises(ApiError) as e:
            await node.apply({"config": second, "mode": "auto"})
        assert e.value.code == "aborted" and "another apply-config" in e.value.message
        node.restart_gate.set()
        await node.apply.acting
        await node.call(second, mode="auto")  # the slot is free again

    run(go())
    assert node.effective()["machine"]["nodeLabels"] == {"zone": "b"}
    assert [h["version"] for h in node.store.history()] == [1, 2]


def test_try_reverts_after_its_timeout_unless_confirmed(tmp_path):
    node = Node(tmp_path)

    async def go():
        await node.call(edited(hostname("worker-8")), mode="try", try_timeout=0.3)
        assert node.effective()["machine"]["network"]["hostname"] == "worker-8"
        assert node.store.load() is None  # a try is never kept
        await node.apply._try  # the revert, 0.3 s later
        assert node.effective()["machine"]["network"]["hostname"] == "worker-7"
        # Confirmed: a try, then an auto apply of the same config before the timeout.
        await node.call(edited(hostname("worker-9")), mode="try", try_timeout=0.3)
        pending = node.apply._try
        await node.call(edited(hostname("worker-9")), mode="auto")
        await asyncio.gather(pending, return_exceptions=True)
        assert pending.cancelled() and node.apply._try is None
        assert node.effective()["machine"]["network"]["hostname"] == "worker-9"

    run(go())
    assert node.store.load()["mode"] == "auto"


def test_no_state_partition_applies_live_and_says_it_is_not_kept(tmp_path):
    node = Node(tmp_path, with_state=False)
    reply = run(node.call(edited(hostname("worker-8")), mode="no-reboot"))
    assert "not kept on disk" in reply["message"]
    assert node.effective()["machine"]["network"]["hostname"] == "worker-8"
    with pytest.raises(ApiError, match="no STATE partition"):
        run(node.call(edited(hostname("x")), mode="staged"))


def test_apply_during_shutdown_is_refused(tmp_path):
    node = Node(tmp_path)
    node.apply.closing = True
    with pytest.raises(ApiError, match="shutting down"):
        run(node.call(edited(hostname("worker-8"))))
    assert node.effective()["machine"]["network"]["hostname"] == "worker-7"
