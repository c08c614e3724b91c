"""The Label Studio correction loop: pseudo masks out as brush pre-annotations, corrected masks
back pixel-exact into the ``gtm`` layer. Talks to the server only through ``label-studio-sdk``.

Brush masks are Label Studio's own RLE over the flat RGBA image (``converter.brush``); it is ~5x
larger and much slower to decode than COCO RLE, so masks are converted once at the boundary and
validated both ways: before upload (the RLE must decode back to the mask) and on import (the
decoded length must be H x W x 4, else an error names task, video and frame and nothing is
written). Strokes drawn in the browser are anti-aliased: the alpha channel is thresholded at 128.

Frames are served to Label Studio through a *local files* storage (the server reads the frames
folder directly; ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and a document root covering
the frames) -- the default for a server on this machine or one that mounts the same folder -- or
uploaded with each task (``serve="upload"``), which works with any remote server.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hmtools.errors import HMError, InputError
from hmtools.masks import (
    LAYER_GTM,
    ORIGIN_ACCEPTED,
    ORIGIN_CORRECTED,
    LayerData,
    MaskStore,
    StoreWriter,
    format_video_id,
    normalize_video_id,
    rle,
)
from hmtools.masks.frames import FrameLocator

log = logging.getLogger(__name__)

LABEL = "athlete"
FROM_NAME, TO_NAME = "mask", "image"
LABEL_CONFIG = f"""<View>
  <Header value="Correct the athlete mask: brush adds, eraser removes; submit when it is right"/>
  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>
  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">
    <Label value="{LABEL}" background="#ff2a2a"/>
  </BrushLabels>
</View>"""


class LabelStudioError(HMError):
    """The server refused or could not be reached (message never contains the API key)."""


# ----------------------------------------------------------------------------------------------
# connection


def connect(url: str | None = None, api_key: str | None = None):
    """A ``label_studio_sdk.LabelStudio`` client; URL and key from the arguments or the SDK's
    environment variables ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``. Checks the key."""
    from label_studio_sdk import LabelStudio

    url = url or os.environ.get("LABEL_STUDIO_URL")
    api_key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
    if not url:
        raise InputError("no Label Studio URL: pass --url or set LABEL_STUDIO_URL")
    if not api_key:
        raise InputError("no Label Studio API key: pass --api-key or set LABEL_STUDIO_API_KEY")
    client = LabelStudio(base_url=url.rstrip("/"), api_key=api_key, timeout=60)
    try:
        client.users.whoami()
    except Exception as e:  # httpx / SDK errors: say what happened without the key
        raise _explain(e, url) from None
    return client


def _explain(e: Exception, url: str) -> LabelStudioError:
    status = getattr(e, "status_code", None)
    if status in (401, 403):
        return LabelStudioError(f"{url}: the API key was refused (HTTP {status})")
    name = type(e).__name__
    if "Connect" in name or "Timeout" in name or isinstance(e, OSError):
        return LabelStudioError(f"{url}: cannot reach Label Studio ({name})")
    body = str(getattr(e, "body", "") or "")[:300]
    return LabelStudioError(
        f"{url}: Label Studio request failed ({name}"
        + (f", HTTP {status}" if status else "")
        + (f": {body})" if body else ")")
    )


def _call(url: str, fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except HMError:
        raise
    except Exception as e:
        raise _explain(e, url) from None


def find_project(client, name_or_id: str | int):
    """A project by numeric id or by title."""
    url = str(client._client_wrapper.get_base_url())
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        return _call(url, client.projects.get, int(name_or_id))
    for p in _call(url, client.projects.list):
        if p.title == name_or_id:
            return p
    raise InputError(f"{url}: no project titled {name_or_id!r}")


# ----------------------------------------------------------------------------------------------
# brush codec (validated both ways)


def mask_to_brush(mask: np.ndarray) -> list[int]:
    """0/1 mask -> Label Studio brush RLE, checked by decoding it again."""
    from label_studio_sdk.converter.brush import decode_rle, mask2rle

    m = (np.asarray(mask) > 0).astype(np.uint8) * 255
    out = [int(v) for v in mask2rle(m)]
    back = np.asarray(decode_rle(out), np.uint8)
    if back.size != m.size * 4 or not np.array_equal(
        back.reshape(*m.shape, 4)[..., 3] > 127, m > 0
    ):
        raise HMError("brush RLE does not decode back to the mask (label-studio-sdk codec)")
    return out


def brush_to_mask(rle_values: list[int], height: int, width: int, where: str) -> np.ndarray:
    """Label Studio brush RLE -> 0/1 mask (alpha >= 128); errors name ``where``."""
    from label_studio_sdk.converter.brush import decode_rle

    try:
        flat = np.asarray(decode_rle(list(rle_values)), np.uint8)
    except (ValueError, IndexError, TypeError) as e:
        raise InputError(f"{where}: malformed brush RLE ({e or type(e).__name__})") from None
    if flat.size != height * width * 4:
        raise InputError(
            f"{where}: brush RLE decodes to {flat.size} values, expected "
            f"{height}x{width}x4 = {height * width * 4}"
        )
    return (flat.reshape(height, width, 4)[..., 3] >= 128).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# export


@dataclass
class ExportReport:
    project_id: int
    created: int = 0
    existing: int = 0
    selected: int = 0


def _select_frames(
    store: MaskStore, layer: str, frames: str, max_tasks: int | None
) -> list[tuple[object, int, int, float]]:
    """(info, frame, row, score) to export, lowest confidence first (NaN = lowest).

    ``frames``: ``all``, ``low-score``, ``every:K`` or ``queue:FILE`` (exactly the frames a
    ``hmtools review-queue`` CSV lists; every one must be in the layer)."""
    queue = None
    if frames.startswith("queue:"):
        from hmtools.annotation.review import read_queue

        queue = read_queue(frames.split(":", 1)[1])
    rows = []
    for info, d in store.iter_layer(layer):
        want = None if queue is None else queue.get(info.name, set())
        for i, (f, s) in enumerate(zip(d.frame_index.tolist(), d.score.tolist(), strict=True)):
            if want is None or f in want:
                rows.append((info, f, i, s))
    if queue is not None:
        have = {(r[0].name, r[1]) for r in rows}
        lost = [(v, f) for v, fs in queue.items() for f in sorted(fs) if (v, f) not in have]
        if lost:
            raise InputError(
                f"{frames[6:]}: {len(lost)} queued frame(s) have no {layer!r} mask in "
                f"{store.path} (first: video {lost[0][0]} frame {lost[0][1]})"
            )
    elif frames.startswith("every:"):
        k = int(frames.split(":", 1)[1])
        if k < 1:
            raise InputError("--frames every:K needs K >= 1")
        rows = [r for r in rows if r[1] % k == 0]
    elif frames == "low-score":
        rows = [r for r in rows if not (r[3] >= 0.7)]
    elif frames != "all":
        raise InputError(f"--frames {frames!r}: use all, low-score, every:K or queue:FILE")
    rows.sort(key=lambda r: (-1.0 if np.isnan(r[3]) else r[3], r[0].name, r[1]))
    return rows[:max_tasks] if max_tasks else rows


def ls_export(
    store_path: str | os.PathLike,
    frames_root: str | os.PathLike,
    project: str,
    *,
    layer: str = "pm",
    url: str | None = None,
    api_key: str | None = None,
    frames: str = "all",
    max_tasks: int | None = None,
    document_root: str | os.PathLike | None = None,
    serve: str = "local-files",
) -> ExportReport:
    """Create (or reuse) ``project`` and add one task per selected frame with its pseudo mask
    as a prediction; rerunning adds no duplicate task."""
    client = connect(url, api_key)
    base = str(client._client_wrapper.get_base_url())
    frames_root = Path(frames_root).resolve()
    model_version = f"hmtools-{layer}"
    try:
        proj = find_project(client, project)
    except InputError:
        proj = _call(base, client.projects.create, title=project, label_config=LABEL_CONFIG)
    if serve == "local-files":
        root = Path(
            document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT") or frames_root
        ).resolve()
        try:
            frames_root.relative_to(root)
        except ValueError:
            raise InputError(
                f"{frames_root} is not under the server's local-files document "
                f"root {root} (--document-root)"
            ) from None
        storages = _call(base, client.import_storage.local.list, project=proj.id)
        if not any(Path(s.path or "").resolve() == frames_root for s in storages):
            _call(
                base,
                client.import_storage.local.create,
                project=proj.id,
                path=str(frames_root),
                use_blob_urls=False,
                title="hmtools frames",
            )
    elif serve != "upload":
        raise InputError(f"serve must be local-files or upload, not {serve!r}")
    existing = set()
    for t in _call(base, client.tasks.list, project=proj.id, fields="all"):
        key = (t.data or {}).get("hm_key")
        if key:
            existing.add(key)
    rep = ExportReport(proj.id, existing=len(existing))
    tasks = []
    with MaskStore(store_path) as store:
        sel = _select_frames(store, layer, frames, max_tasks)
        rep.selected = len(sel)
        cache: dict[str, object] = {}
        locator = FrameLocator(frames_root)
        for info, frame, row, score in sel:
            key = f"{info.key}/{frame}"
            if key in existing:
                continue
            # by number, whatever the extension and padding (PNG masks of JPEG frames)
            img = locator.frame(info.video_id, frame, info.attrs.get("frames_dir"))
            if serve == "local-files":
                image = f"/data/local-files/?d={img.relative_to(root).as_posix()}"
            else:
                image = _upload(client, base, proj.id, img)
            if info.key not in cache:
                cache[info.key] = store.read_layer(info.video_id, layer)
            d = cache[info.key]
            mask = rle.decode([d.rles[row]], info.height, info.width)[0]
            s = None if np.isnan(score) else float(score)
            tasks.append(
                {
                    "data": {
                        "image": image,
                        "hm_key": key,
                        "video": info.name,
                        "video_id": json.dumps(list(info.video_id)),
                        "frame": int(frame),
                        "height": info.height,
                        "width": info.width,
                    },
                    "predictions": [
                        {
                            "model_version": model_version,
                            "score": s,
                            "result": [_brush_result(mask_to_brush(mask), info.height, info.width)],
                        }
                    ],
                }
            )
    for i in range(0, len(tasks), 200):
        _call(
            base,
            client.projects.import_tasks,
            proj.id,
            request=tasks[i : i + 200],
            commit_to_project=True,
        )
    rep.created = len(tasks)
    # the labelling stream shows only predictions of the project's model version (the server
    # accepts a version only once predictions of it exist)
    if tasks or existing:
        _call(base, client.projects.update, proj.id, model_version=model_version)
    return rep


def _brush_result(values: list[int], h: int, w: int) -> dict:
    return {
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "brushlabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": values, "brushlabels": [LABEL]},
    }


def _upload(client, base: str, project_id: int, img: Path) -> str:
    """Upload one frame to the project's file storage; returns the URL Label Studio serves."""
    import httpx

    wrapper = client._client_wrapper
    with open(img, "rb") as fh:
        r = httpx.post(
            f"{base}/api/projects/{project_id}/import?commit_to_project=false",
            headers=wrapper.get_headers(),
            files={"file": (img.name, fh)},
            timeout=60,
        )
    if r.status_code >= 400:
        raise LabelStudioError(f"{base}: upload of {img} refused (HTTP {r.status_code})")
    ids = r.json().get("file_upload_ids") or []
    if not ids:
        raise LabelStudioError(f"{base}: upload of {img} returned no file id")
    info = httpx.get(
        f"{base}/api/import/file-upload/{ids[0]}", headers=wrapper.get_headers(), timeout=60
    ).json()
    return (
        info.get("file")
        if str(info.get("file", "")).startswith("/")
        else f"/data/{info.get('file')}"
    )


# ----------------------------------------------------------------------------------------------
# import and status


@dataclass
class ImportReport:
    imported: int = 0
    corrected: int = 0
    accepted: int = 0
    skipped: list[str] = field(default_factory=list)  # "video frame N (task T)"
    remaining: int = 0
    videos: int = 0


def _annotation_of(task, policy: str):
    anns = [a for a in (task.annotations or []) if not _get(a, "was_cancelled")]
    if not anns:
        return None
    if policy == "ground-truth":
        gt = [a for a in anns if _get(a, "ground_truth")]
        anns = gt or anns
    return max(anns, key=lambda a: (str(_get(a, "updated_at") or ""), _get(a, "id") or 0))


def _get(obj, name: str):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _brush_values(result: list, where: str) -> list[int] | None:
    for r in result or []:
        if _get(r, "type") == "brushlabels" or _get(r, "from_name") == FROM_NAME:
            v = _get(r, "value") or {}
            if v.get("format", "rle") != "rle" or "rle" not in v:
                raise InputError(f"{where}: brush result without RLE")
            return v["rle"]
    return None


def ls_import(
    store_path: str | os.PathLike,
    project: str,
    *,
    url: str | None = None,
    api_key: str | None = None,
    policy: str = "latest",
) -> ImportReport:
    """Bring submitted annotations back into the ``gtm`` layer (all-or-nothing); the origin is
    ``accepted`` when the annotation equals the prediction, ``corrected`` otherwise."""
    if policy not in ("latest", "ground-truth"):
        raise InputError("--policy must be latest or ground-truth")
    client = connect(url, api_key)
    base = str(client._client_wrapper.get_base_url())
    proj = find_project(client, project)
    rep = ImportReport()
    new: dict[tuple, dict[int, tuple[bytes, int]]] = defaultdict(dict)
    sizes: dict[tuple, tuple[int, int]] = {}
    for t in _call(base, client.tasks.list, project=proj.id, fields="all"):
        data = t.data or {}
        if "hm_key" not in data:
            continue
        vid = normalize_video_id(json.loads(data["video_id"]))
        frame, h, w = int(data["frame"]), int(data["height"]), int(data["width"])
        where = f"task {t.id} (video {format_video_id(vid)} frame {frame})"
        cancelled = [a for a in (t.annotations or []) if _get(a, "was_cancelled")]
        ann = _annotation_of(t, policy)
        if ann is None:
            if cancelled:
                rep.skipped.append(where)
            else:
                rep.remaining += 1
            continue
        values = _brush_values(_get(ann, "result"), where)
        mask = (
            brush_to_mask(values, h, w, where) if values is not None else np.zeros((h, w), np.uint8)
        )
        pred = None
        for p in t.predictions or []:
            pv = _brush_values(_get(p, "result"), where)
            if pv is not None:
                pred = brush_to_mask(pv, h, w, where)
        origin = (
            ORIGIN_ACCEPTED if pred is not None and np.array_equal(pred, mask) else ORIGIN_CORRECTED
        )
        new[vid][frame] = (rle.encode(mask)[0], origin)
        sizes[vid] = (h, w)
    with StoreWriter(store_path, mode="append") as wr:
        for vid, frames in new.items():
            h, w = sizes[vid]
            if not wr.has_video(vid):
                raise InputError(
                    f"{store_path}: no video {format_video_id(vid)} (task data from another store?)"
                )
            old = wr.read_layer(vid, LAYER_GTM)
            merged = {
                int(f): (r, int(o), float(sc))
                for f, r, o, sc in zip(
                    old.frame_index, old.rles, old.origin, old.score, strict=True
                )
            }
            for f, (r, o) in frames.items():
                merged[f] = (r, o, float("nan"))
            fs = sorted(merged)
            data = LayerData.from_rles(
                fs,
                [merged[f][0] for f in fs],
                h,
                w,
                [merged[f][2] for f in fs],
                [merged[f][1] for f in fs],
            )
            wr.write_layer(vid, LAYER_GTM, data, replace=True)
            rep.imported += len(frames)
            rep.corrected += sum(o == ORIGIN_CORRECTED for _, o in frames.values())
            rep.accepted += sum(o == ORIGIN_ACCEPTED for _, o in frames.values())
        rep.videos = len(new)
    return rep


def ls_status(project: str, *, url: str | None = None, api_key: str | None = None) -> dict:
    """Per video: done / remaining / skipped task counts."""
    client = connect(url, api_key)
    base = str(client._client_wrapper.get_base_url())
    proj = find_project(client, project)
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"done": 0, "remaining": 0, "skipped": 0})
    for t in _call(base, client.tasks.list, project=proj.id, fields="all"):
        data = t.data or {}
        video = data.get("video", "?")
        anns = t.annotations or []
        if any(not _get(a, "was_cancelled") for a in anns):
            out[video]["done"] += 1
        elif anns:
            out[video]["skipped"] += 1
        else:
            out[video]["remaining"] += 1
    return dict(sorted(out.items()))
