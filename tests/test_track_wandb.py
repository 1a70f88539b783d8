"""wandb for real: an offline run's folder holds its config, metric history and summary; the runs of one
notebook share a wandb group; asked for without wandb, a warning says so once. The offline ``.wandb`` file
is read here with an independent reader of its format (LevelDB-style log blocks of protobuf records)."""
import struct
import warnings

import pytest

from patchnb import track

wandb = pytest.importorskip("wandb")


def wandb_records(path):
    """Records of an offline ``run-<id>.wandb`` file: a 7-byte header, then 32 KiB blocks of chunks
    (crc32: 4 bytes, length: 2, type: 1 = full, 2 = first, 3 = middle, 4 = last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    out, pos, buf, block = [], 7, b"", 32768
    while pos + 7 <= len(raw):
        room = block - pos % block
        if room < 7:  # block trailer: padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += room
            continue
        data = raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        buf = data if kind in (1, 2) else buf + data
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def flushed_records(path, timeout=60.0):
    """The file's records once wandb-core has written its ``exit`` record: the writer flushes the offline
    file asynchronously, so ``finish()`` can return while the file still holds only its 7-byte header
    (measured: 3 of 6 runs on a 2-core machine)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _items(entries):
    import json

    return {e.key or "/".join(e.nested_key): json.loads(e.value_json) for e in entries}


def test_offline_wandb_run_holds_config_history_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("PATCHNB_WANDB", "1")
    monkeypatch.setenv("PATCHNB_NOTEBOOK", "patch_table1")
    run = track.Run("demo", {"lr": 0.1, "shape": (1, 2)}, tmp_path)
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.finish(best=0.9)
    [file] = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    records = flushed_records(file)
    kinds = [r.WhichOneof("record_type") for r in records]
    [meta] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert meta.run_id == run.id and meta.run_group == "patch_table1" and meta.display_name == "demo"
    config = _items(meta.config.update)
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config.update(_items(r.config.update))
    config = {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in config.items()}
    assert config["lr"] == 0.1 and config["shape"] == [1, 2]
    history = [_items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    assert [h["loss"] for h in history] == pytest.approx([1.0, 0.5, 1 / 3])
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(_items(r.summary.update))
    assert summary["best"] == 0.9 and "exit" in kinds
    assert (tmp_path / "record.yaml").is_file()  # the local record is always written


def test_asked_without_wandb_warns_once(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    monkeypatch.setattr(track, "_WARNED", set())
    monkeypatch.setenv("PATCHNB_WANDB", "1")
    with pytest.warns(RuntimeWarning, match="wandb is not installed"):
        assert track.wandb_wanted() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert track.wandb_wanted() is False  # no second warning
