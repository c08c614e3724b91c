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
    """A project by numeric id or by title (the first of its set: :func:`project_set`)."""
    return project_set(client, name_or_id)[0]


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
    project_id: int  # the set's first project
    created: int = 0
    existing: int = 0
    selected: int = 0
    # {project id: (title, tasks created now, tasks in it in all)} of the project set
    projects: dict[int, tuple[str, int, int]] = field(default_factory=dict)


MAX_TASKS_PER_PROJECT = 100_000  # Label Studio's maintainers advise at most ~100k a project
REQUEST_BYTES = 50 * 2**20  # tasks per import request: at most ~50 MB (the server takes 200)


def part_title(name: str, k: int) -> str:
    """The title of part ``k`` (1-based) of a project set: ``name``, ``name #2``, ..."""
    return name if k == 1 else f"{name} #{k}"


def project_set(client, name_or_id: str | int) -> list:
    """The projects of a set, in order: ``name`` and its parts ``name #2``, ``name #3``, ...
    (made by ``ls-export --max-tasks-per-project``); a numeric id is that project alone."""
    url = str(client._client_wrapper.get_base_url())
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        return [_call(url, client.projects.get, int(name_or_id))]
    by_title = {p.title: p for p in _call(url, client.projects.list)}
    out = []
    k = 1
    while part_title(str(name_or_id), k) in by_title:
        out.append(by_title[part_title(str(name_or_id), k)])
        k += 1
    if not out:
        raise InputError(f"{url}: no project titled {name_or_id!r}")
    return out


def priority_level(score: float) -> int:
    """Tasks are ordered by confidence level (NaN first, then scores in steps of 0.1), and within
    a level by video and frame, so an annotator sees a video's frames together and in order."""
    return -1 if not np.isfinite(score) else min(9, max(0, int(score * 10)))


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
    rows = rows[:max_tasks] if max_tasks else rows  # the lowest scores
    # import order: by priority level, then the video (by its lowest score), then the frame
    first: dict[str, int] = {}
    for r in rows:
        first.setdefault(r[0].name, len(first))
    rows.sort(key=lambda r: (priority_level(r[3]), first[r[0].name], r[1]))
    return rows


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
    max_tasks_per_project: int = MAX_TASKS_PER_PROJECT,
) -> ExportReport:
    """Create (or reuse) the project set ``project`` and add one task per selected frame with
    its pseudo mask as a prediction; rerunning adds no duplicate task.

    A set is ``project``, ``project #2``, ...: whole videos go to one project (a video with
    tasks already somewhere gets its new ones there), a new part is made when the next video
    would take a project past ``max_tasks_per_project`` tasks. Tasks are imported in priority
    order (:func:`priority_level`), a video's frames together and in frame order within a
    level -- the order of Label Studio's labelling stream.

    ``serve``: ``local-files`` (the server reads ``frames_root`` through a local-files storage)
    or ``upload`` (the frame travels inside its task as a ``data:`` URI, through the SDK's
    public task import: any remote server, no shared folder; the server's database then holds
    the frames)."""
    if max_tasks_per_project < 1:
        raise InputError("--max-tasks-per-project must be at least 1")
    with MaskStore(store_path) as st:  # before the server: a wrong layer makes no project
        if layer not in st.layer_names():
            raise InputError(
                f"{st.path}: no layer {layer!r} (it has: {', '.join(st.layer_names()) or 'none'})"
            )
    client = connect(url, api_key)
    base = str(client._client_wrapper.get_base_url())
    frames_root = Path(frames_root).resolve()
    model_version = f"hmtools-{layer}"
    try:  # an unknown id is the server's error; an unknown title a new set
        projects = project_set(client, project)
    except InputError:
        projects = []
    if serve not in ("local-files", "upload"):
        raise InputError(f"serve must be local-files or upload, not {serve!r}")
    root = frames_root
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

    def make_part() -> object:
        title = part_title(str(project), len(projects) + 1)
        proj = _call(base, client.projects.create, title=title, label_config=LABEL_CONFIG)
        projects.append(proj)
        count[proj.id] = 0
        return proj

    def ensure_storage(proj) -> None:
        if serve != "local-files":
            return
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

    existing: set[str] = set()
    count: dict[int, int] = {}
    if not projects:
        make_part()
    video_project: dict[str, int] = {}  # store key of a video -> the project holding its tasks
    for proj in projects:
        count[proj.id] = 0
        for t in _call(base, client.tasks.list, project=proj.id, fields="all"):
            count[proj.id] += 1
            key = (t.data or {}).get("hm_key")
            if key:
                existing.add(key)
                video_project.setdefault(key.rsplit("/", 1)[0], proj.id)
    rep = ExportReport(projects[0].id, existing=len(existing))
    by_project: dict[int, list[dict]] = defaultdict(list)
    with MaskStore(store_path) as store:
        sel = _select_frames(store, layer, frames, max_tasks)
        rep.selected = len(sel)
        todo = [r for r in sel if f"{r[0].key}/{r[1]}" not in existing]
        new_per_video: dict[str, int] = defaultdict(int)
        for info, *_ in todo:
            new_per_video[info.key] += 1
        for vkey, n_new in new_per_video.items():  # in priority order of first appearance
            if vkey in video_project:
                pid = video_project[vkey]
                if count[pid] + n_new > max_tasks_per_project:
                    log.warning(
                        "video %s: its %d new tasks join its project %d past %d tasks "
                        "(a video's tasks stay together)",
                        vkey,
                        n_new,
                        pid,
                        max_tasks_per_project,
                    )
            else:
                room = [p.id for p in projects if count[p.id] + n_new <= max_tasks_per_project]
                pid = room[0] if room else make_part().id
                video_project[vkey] = pid
            count[pid] += n_new
        receiving = {video_project[v] for v in new_per_video}
        for proj in projects:
            if proj.id in receiving:
                ensure_storage(proj)
        cache: dict[str, object] = {}
        locator = FrameLocator(frames_root)
        for info, frame, row, score in todo:
            key = f"{info.key}/{frame}"
            # by number, whatever the extension and padding (PNG masks of JPEG frames)
            img = locator.frame(info.video_id, frame, info.attrs.get("frames_dir"))
            if serve == "local-files":
                image = f"/data/local-files/?d={img.relative_to(root).as_posix()}"
            else:
                image = _data_uri(img)
            if info.key not in cache:
                cache[info.key] = store.read_layer(info.video_id, layer)
            d = cache[info.key]
            mask = rle.decode([d.rles[row]], info.height, info.width)[0]
            s = None if np.isnan(score) else float(score)
            by_project[video_project[info.key]].append(
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
    for proj in projects:
        tasks = by_project.get(proj.id, [])
        for batch in _batches(tasks):
            _call(
                base, client.projects.import_tasks, proj.id, request=batch, commit_to_project=True
            )
        rep.created += len(tasks)
        rep.projects[proj.id] = (proj.title, len(tasks), count[proj.id])
        # the labelling stream shows only predictions of the project's model version (the
        # server accepts a version only once predictions of it exist)
        if count[proj.id]:
            _call(base, client.projects.update, proj.id, model_version=model_version)
    return rep


def _batches(tasks: list[dict], n: int = 200, max_bytes: int = REQUEST_BYTES):
    """Import requests of at most ``n`` tasks and about ``max_bytes`` of JSON."""
    batch: list[dict] = []
    size = 0
    for t in tasks:
        b = len(t["data"]["image"]) + 2000 + 3 * t["data"]["height"] * t["data"]["width"] // 50
        if batch and (len(batch) >= n or size + b > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(t)
        size += b
    if batch:
        yield batch


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


def _data_uri(img: Path) -> str:
    """The frame file as a ``data:`` URI (its bytes unchanged), for ``serve="upload"``."""
    import base64
    import mimetypes

    mime = mimetypes.guess_type(img.name)[0] or "image/jpeg"
    try:
        data = img.read_bytes()
    except OSError as e:
        raise InputError(f"{img}: cannot read the frame ({e.strerror})") from None
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


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
    rep = ImportReport()
    new: dict[tuple, dict[int, tuple[bytes, int]]] = defaultdict(dict)
    sizes: dict[tuple, tuple[int, int]] = {}
    tasks = (
        t
        for proj in project_set(client, project)
        for t in _call(base, client.tasks.list, project=proj.id, fields="all")
    )
    for t in tasks:
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
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"done": 0, "remaining": 0, "skipped": 0})
    tasks = (
        t
        for proj in project_set(client, project)
        for t in _call(base, client.tasks.list, project=proj.id, fields="all")
    )
    for t in tasks:
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
