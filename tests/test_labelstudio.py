"""The Label Studio loop against a real server started here (never a mock)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from hmtools.annotation.labelstudio import (
    LabelStudioError,
    brush_to_mask,
    connect,
    find_project,
    ls_export,
    ls_import,
    ls_status,
    mask_to_brush,
)
from hmtools.cli import main
from hmtools.errors import InputError
from hmtools.masks import ORIGIN_ACCEPTED, ORIGIN_CORRECTED, MaskStore
from tests.conftest import store_with_pm
from tests.labelstudio_server import PASSWORD, USER, Server, free_port, label_studio_bin


def test_brush_codec_round_trip_and_validation():
    m = np.zeros((20, 30), np.uint8)
    m[3:9, 4:20] = 1
    values = mask_to_brush(m)
    assert np.array_equal(brush_to_mask(values, 20, 30, "t"), m)
    with pytest.raises(InputError, match="t: brush RLE decodes to"):
        brush_to_mask(values, 21, 30, "t")
    with pytest.raises(InputError, match="where: malformed brush RLE"):
        brush_to_mask(values[: len(values) // 2], 20, 30, "where")


@pytest.fixture(scope="module")
def server(tmp_path_factory, synth_small):
    exe = label_studio_bin()
    if exe is None:
        if os.environ.get("HMTOOLS_REQUIRE_LS") == "1":
            pytest.fail("CI must test against a real Label Studio (.venv-ls missing)")
        pytest.skip("no Label Studio server venv (.venv-ls; see .ci/run)")
    srv = Server(exe, tmp_path_factory.mktemp("ls"), synth_small.parent)
    yield srv
    srv.stop()


@pytest.mark.slow
def test_round_trip_through_a_real_server(server, synth_small, tmp_path):
    store = tmp_path / "hm.h5"
    store_with_pm(synth_small, store, kernel=3, keep_gtm=False)
    kw = {"url": server.url, "api_key": server.token}
    rep = ls_export(
        store, synth_small / "frames", "roundtrip", max_tasks=5, document_root=server.docroot, **kw
    )
    assert rep.created == 5
    again = ls_export(
        store, synth_small / "frames", "roundtrip", max_tasks=5, document_root=server.docroot, **kw
    )
    assert again.created == 0 and again.existing == 5  # idempotent
    client = connect(**kw)
    proj = find_project(client, "roundtrip")
    assert proj.model_version == "hmtools-pm"
    tasks = sorted(client.tasks.list(project=proj.id, fields="all"), key=lambda t: t.id)
    assert len(tasks) == 5
    # the frame is served to the browser from the local-files storage, bit for bit
    import httpx

    img = tasks[0].data["image"]
    r = httpx.get(server.url + img, headers={"Authorization": f"Token {server.token}"})
    assert r.status_code == 200
    served = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    local = cv2.imread(str(server.docroot / img.split("?d=", 1)[1]))
    assert served is not None and np.array_equal(served, local)
    # play annotator: accept task 0, edit task 1, skip task 2, leave 3 and 4
    t0, t1, t2 = tasks[:3]
    pred0 = t0.predictions[0]
    res0 = pred0["result"] if isinstance(pred0, dict) else pred0.result
    client.annotations.create(id=t0.id, result=res0)
    h, w = t1.data["height"], t1.data["width"]
    edited = np.zeros((h, w), np.uint8)
    edited[h // 4 : h // 2, w // 4 : w // 3] = 1
    client.annotations.create(
        id=t1.id,
        result=[
            {
                "from_name": "mask",
                "to_name": "image",
                "type": "brushlabels",
                "original_width": w,
                "original_height": h,
                "image_rotation": 0,
                "value": {
                    "format": "rle",
                    "rle": mask_to_brush(edited),
                    "brushlabels": ["athlete"],
                },
            }
        ],
    )
    client.annotations.create(id=t2.id, result=[], was_cancelled=True)
    imp = ls_import(store, "roundtrip", **kw)
    assert imp.imported == 2 and imp.accepted == 1 and imp.corrected == 1
    assert imp.remaining == 2 and len(imp.skipped) == 1 and f"task {t2.id}" in imp.skipped[0]
    with MaskStore(store) as st:
        for t, want, origin in ((t0, None, ORIGIN_ACCEPTED), (t1, edited, ORIGIN_CORRECTED)):
            vid = tuple(json.loads(t.data["video_id"]))
            fi, m = st.read_masks(vid, "gtm", t.data["frame"], t.data["frame"] + 1)
            d = st.read_layer(vid, "gtm", t.data["frame"], t.data["frame"] + 1)
            assert d.origin.tolist() == [origin]
            if want is None:  # accepted: equals the pseudo mask bit for bit
                _, pm = st.read_masks(vid, "pm", t.data["frame"], t.data["frame"] + 1)
                want = pm[0]
            assert np.array_equal(m[0], want)
    before = store.read_bytes()
    again = ls_import(store, "roundtrip", **kw)  # idempotent
    assert again.imported == 2
    with MaskStore(store) as st:
        assert sum(len(d) for _, d in st.iter_layer("gtm")) == 2
    status = ls_status("roundtrip", **kw)
    assert sum(v["done"] for v in status.values()) == 2
    assert sum(v["skipped"] for v in status.values()) == 1
    # a malformed annotation: clear error naming the task, store untouched
    client.annotations.create(
        id=tasks[3].id,
        result=[
            {
                "from_name": "mask",
                "to_name": "image",
                "type": "brushlabels",
                "original_width": w,
                "original_height": h,
                "value": {"format": "rle", "rle": [1, 2, 3], "brushlabels": ["x"]},
            }
        ],
    )
    snapshot = store.read_bytes()
    with pytest.raises(InputError, match=rf"task {tasks[3].id} \(video .* frame \d+\)"):
        ls_import(store, "roundtrip", **kw)
    assert store.read_bytes() == snapshot
    del before


@pytest.mark.slow
def test_wrong_key_and_server_down(server, synth_small, tmp_path):
    store = tmp_path / "hm.h5"
    store_with_pm(synth_small, store, kernel=3, keep_gtm=False)
    res = CliRunner().invoke(
        main, ["ls-status", "--project", "x", "--url", server.url, "--api-key", "0" * 40]
    )
    assert res.exit_code == 1 and "refused" in res.output and "0" * 40 not in res.output
    assert "Traceback" not in res.output
    with pytest.raises(LabelStudioError, match="cannot reach"):
        connect(f"http://127.0.0.1:{free_port()}", "abc")
    res = CliRunner().invoke(
        main,
        [
            "ls-export",
            str(store),
            "--frames-root",
            str(synth_small / "frames"),
            "--project",
            "p",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "--api-key",
            "k",
        ],
    )
    assert res.exit_code == 1 and "cannot reach" in res.output


def _login_cookies(url: str) -> dict:
    import httpx

    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as c:
        c.get("/user/login/")
        csrf = c.cookies.get("csrftoken")
        r = c.post(
            "/user/login/",
            data={"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": csrf},
            headers={"Referer": f"{url}/user/login/", "X-CSRFToken": csrf or ""},
        )
        assert r.status_code == 200 and "sessionid" in c.cookies, "login failed"
        return dict(c.cookies)


@pytest.mark.slow
def test_browser_shows_the_pre_annotation(server, synth_small, tmp_path):
    """What an annotator sees: the task page, logged in, with the pseudo mask drawn in red."""
    from tests.browser import Browser, chromium

    exe = chromium()
    if exe is None:
        if os.environ.get("HMTOOLS_REQUIRE_LS") == "1":
            pytest.fail("CI must run the browser check: Debian's chromium is missing")
        pytest.skip("no chromium (apt-get install chromium)")
    store = tmp_path / "hm.h5"
    store_with_pm(synth_small, store, kernel=9, keep_gtm=False)
    kw = {"url": server.url, "api_key": server.token}
    ls_export(
        store, synth_small / "frames", "browser", max_tasks=1, document_root=server.docroot, **kw
    )
    client = connect(**kw)
    proj = find_project(client, "browser")
    task = next(iter(client.tasks.list(project=proj.id, fields="all")))
    artifacts = Path(os.environ.get("HMTOOLS_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    b = Browser(exe)
    try:
        b.cmd("Network.enable")
        for name, value in _login_cookies(server.url).items():
            b.cmd("Network.setCookie", name=name, value=value, domain="127.0.0.1", path="/")
        b.cmd("Page.enable")
        b.cmd("Page.navigate", url=f"{server.url}/projects/{proj.id}/data?task={task.id}")
        red = 0
        for _ in range(80):  # the labelling app loads, then draws the prediction
            time.sleep(1.5)
            png = b.screenshot()
            img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
            # the brush colour (#ff2a2a, drawn semi-transparent over the frame) inside the
            # labelling canvas -- the page header and the side panels are left out
            canvas = img[80:, 300:].astype(int)
            b_, g_, r_ = canvas[..., 0], canvas[..., 1], canvas[..., 2]
            red = int(((r_ > 140) & (r_ - g_ > 70) & (r_ - b_ > 70)).sum())
            if red > 3000:  # far more than the logo or the loading spinner (~600 px)
                break
        (artifacts / "labelstudio_task.png").write_bytes(png)
    finally:
        b.close()
    assert red > 200, (
        f"no red pre-annotation visible (screenshot: {artifacts / 'labelstudio_task.png'})"
    )


@pytest.mark.slow
def test_upload_mode_serves_frames_to_a_remote_server(server, synth_small, tmp_path):
    """--serve upload: the frame travels inside its task through the SDK's public task import
    (no shared filesystem, no private HTTP client), byte for byte."""
    import base64

    store = tmp_path / "hm.h5"
    store_with_pm(synth_small, store, kernel=3, keep_gtm=False)
    kw = {"url": server.url, "api_key": server.token}
    rep = ls_export(store, synth_small / "frames", "upload", max_tasks=2, serve="upload", **kw)
    assert rep.created == 2
    client = connect(**kw)
    proj = find_project(client, "upload")
    for t in client.tasks.list(project=proj.id, fields="all"):
        head, b64 = t.data["image"].split(",", 1)
        assert head == "data:image/jpeg;base64"
        with MaskStore(store) as st:
            info = st.info(tuple(json.loads(t.data["video_id"])))
        local = (
            synth_small
            / "frames"
            / info.attrs["frames_dir"]
            / info.attrs["frame_pattern"].format(t.data["frame"])
        )
        assert base64.b64decode(b64) == local.read_bytes()


@pytest.mark.slow
def test_a_dataset_splits_over_projects_by_whole_videos(server, tmp_path):
    """--max-tasks-per-project: whole videos per project, parts NAME #2 ..., a later export
    puts a video's new frames beside its old ones; import and status read the whole set; the
    import order is priority level, then video, then frame."""
    from hmtools.annotation.labelstudio import ls_status, priority_level, project_set
    from hmtools.masks import LayerData, StoreWriter

    h, w = 16, 20
    store = tmp_path / "pm.h5"
    rng = np.random.default_rng(0)
    with StoreWriter(store) as wr:
        for v, n in (("a", 6), ("b", 5), ("c", 4)):
            d = tmp_path / "frames" / v
            d.mkdir(parents=True)
            masks = np.zeros((n, h, w), np.uint8)
            masks[:, 4:10, 5:12] = 1
            for t in range(n):
                cv2.imwrite(str(d / f"{t:05d}.jpg"), rng.integers(0, 255, (h, w, 3), np.uint8))
            score = rng.uniform(0.05, 0.95, n).astype(np.float32)
            wr.add_video((v,), height=h, width=w, num_frames=n, frame_pattern="{:05d}.jpg")
            wr.write_layer((v,), "pm", LayerData.from_masks(np.arange(n), masks, score))
    kw = {"url": server.url, "api_key": server.token, "document_root": server.docroot}
    rep = ls_export(
        store, tmp_path / "frames", "split", frames="every:2", max_tasks_per_project=5, **kw
    )  # a: 3, b: 3, c: 2 tasks -> two projects of <= 5, no video cut
    assert rep.created == 8 and len(rep.projects) == 2
    client = connect(url=server.url, api_key=server.token)
    parts = project_set(client, "split")
    assert [p.title for p in parts] == ["split", "split #2"]
    videos = []
    for p in parts:
        ts = list(client.tasks.list(project=p.id, fields="all"))
        videos.append({t.data["video"] for t in ts})
        # import order (task ids): priority levels never fall, and within a level a video's
        # frames come together and in frame order
        keys = [
            (priority_level(_pred_score(t)), t.data["video"], t.data["frame"])
            for t in sorted(ts, key=lambda t: t.id)
        ]
        assert [k[0] for k in keys] == sorted(k[0] for k in keys)
        for level in {k[0] for k in keys}:
            run = [(v, f) for lv, v, f in keys if lv == level]
            seen: list[str] = []
            for v, _ in run:
                if not seen or seen[-1] != v:
                    assert v not in seen, (level, run)  # a video comes back: not together
                    seen.append(v)
            assert all(a[1] < b[1] for a, b in zip(run, run[1:], strict=False) if a[0] == b[0])
    assert sorted(v for vs in videos for v in vs) == ["a", "b", "c"]  # each video in one
    sizes = [sum({"a": 3, "b": 3, "c": 2}[v] for v in vs) for vs in videos]
    assert max(sizes) <= 5
    # the rest of each video's frames join their video's project, past the cap
    rep = ls_export(store, tmp_path / "frames", "split", max_tasks_per_project=5, **kw)
    assert rep.created == 7 and rep.existing == 8
    counts = {p.title: {t.data["video"] for t in client.tasks.list(project=p.id)} for p in parts}
    assert counts == {"split": videos[0], "split #2": videos[1]}
    st = ls_status("split", url=server.url, api_key=server.token)
    assert {v: c["remaining"] for v, c in st.items()} == {"a": 6, "b": 5, "c": 4}
    r = CliRunner().invoke(
        main, ["ls-status", "--project", "split", "--url", server.url, "--api-key", server.token]
    )
    assert r.exit_code == 0 and "15" in r.output.splitlines()[-1]


def _pred_score(t) -> float:
    p = t.predictions[0]
    s = p["score"] if isinstance(p, dict) else p.score
    return float("nan") if s is None else float(s)


@pytest.mark.slow
def test_a_video_of_1000_frames_exports(server, tmp_path):
    """Issue 26: long videos went through every command but this one had not been tried."""
    from hmtools.masks import LayerData, StoreWriter

    n, h, w = 1000, 24, 32
    frames = tmp_path / "frames" / "long"
    frames.mkdir(parents=True)
    masks = np.zeros((n, h, w), np.uint8)
    for t in range(n):
        masks[t, 4:12, t % 20 : t % 20 + 8] = 1
        cv2.imwrite(str(frames / f"{t:05d}.jpg"), np.full((h, w, 3), t % 256, np.uint8))
    store = tmp_path / "pm.h5"
    with StoreWriter(store) as wr:
        wr.add_video(("long",), height=h, width=w, num_frames=n, frame_pattern="{:05d}.jpg")
        wr.write_layer(("long",), "pm", LayerData.from_masks(np.arange(n), masks, 0.5))
    kw = {"url": server.url, "api_key": server.token}
    rep = ls_export(store, tmp_path / "frames", "long-video", document_root=server.docroot, **kw)
    assert rep.created == n
    client = connect(**kw)
    proj = find_project(client, "long-video")
    got = {t.data["frame"]: t for t in client.tasks.list(project=proj.id, fields="all")}
    assert sorted(got) == list(range(n))
    pred = got[999].predictions[0]
    res = (pred["result"] if isinstance(pred, dict) else pred.result)[0]
    assert np.array_equal(brush_to_mask(res["value"]["rle"], h, w, "t"), masks[999])
