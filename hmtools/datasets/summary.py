"""``hmtools dataset-summary``: what a user checks first after downloading a dataset."""

from __future__ import annotations

from collections import Counter

import numpy as np

from hmtools.datasets.records import DEFAULT_LENGTH, Sample
from hmtools.errors import InputError


def _range(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, np.float64)
    return {"min": float(a.min()), "max": float(a.max()), "mean": round(float(a.mean()), 4)}


def frames_status(s: Sample, length: int = DEFAULT_LENGTH) -> str | None:
    """``None`` when the sample's frames are complete, else what is missing."""
    if s.frames_dir is None or not s.frames_dir.is_dir():
        return f"no folder {s.frames_dir}"
    try:
        files = s.frame_files(length)
    except InputError as e:
        return str(e)
    if s.frame_labels is not None and len(files) != len(s.frame_labels):
        return f"{len(files)} frames in {s.frames_dir}, the annotation labels {len(s.frame_labels)}"
    if s.dataset == "finediving":
        nums = [n for n, _ in files]
        gaps = nums[-1] - nums[0] + 1 - len(nums)
        if gaps:
            return f"frames {nums[0]}..{nums[-1]} of {s.frames_dir} lack {gaps} in between"
    return None


def summarize_dataset(
    samples: list[Sample], check_frames: bool = False, length: int = DEFAULT_LENGTH
) -> dict:
    """Counts and ranges over ``samples`` (a JSON-ready dict)."""
    if not samples:
        raise InputError("the annotation files hold no samples")
    splits = Counter(s.split or "unlisted" for s in samples)
    actions = Counter(s.action_type for s in samples)
    judges = Counter(len(s.judge_scores) for s in samples if s.judge_scores is not None)
    trans = Counter(len(s.step_transitions) for s in samples if s.step_transitions is not None)
    out: dict = {
        "dataset": samples[0].dataset,
        "samples": len(samples),
        "splits": dict(sorted(splits.items())),
        "action_types": len(actions),
        "samples_per_action_type": dict(actions.most_common()),
        "difficulty": _range([s.difficulty for s in samples if s.difficulty is not None]),
        "final_score": _range([s.final_score for s in samples]),
        "judges_per_sample": {str(k): v for k, v in sorted(judges.items())},
        "step_transitions_per_sample": {str(k): v for k, v in sorted(trans.items())},
    }
    if check_frames:
        missing = []
        for s in samples:
            why = frames_status(s, length)
            if why is not None:
                missing.append({"id": list(s.id), "problem": why})
        out["frames_complete"] = len(samples) - len(missing)
        out["frames_missing"] = missing
    return out


def format_dataset_summary(d: dict, max_list: int = 20) -> str:
    lines = [f"dataset {d['dataset']}: {d['samples']} samples"]
    lines.append("  splits: " + ", ".join(f"{k} {v}" for k, v in d["splits"].items()))
    top = list(d["samples_per_action_type"].items())
    lines.append(
        f"  action types: {d['action_types']} (most common: "
        + ", ".join(f"{k} {v}" for k, v in top[:8])
        + ")"
    )
    for key in ("difficulty", "final_score"):
        r = d[key]
        if r:
            lines.append(f"  {key}: {r['min']:g} .. {r['max']:g} (mean {r['mean']:g})")
    if d["judges_per_sample"]:
        lines.append(
            "  judges per sample: "
            + ", ".join(f"{k} judges: {v}" for k, v in d["judges_per_sample"].items())
        )
    if d["step_transitions_per_sample"]:
        lines.append(
            "  step transitions per sample: "
            + ", ".join(f"{k}: {v}" for k, v in d["step_transitions_per_sample"].items())
        )
    if "frames_complete" in d:
        lines.append(f"  frame folders complete: {d['frames_complete']} of {d['samples']}")
        for m in d["frames_missing"][:max_list]:
            lines.append(f"    missing {'/'.join(map(str, m['id']))}: {m['problem']}")
        if len(d["frames_missing"]) > max_list:
            lines.append(
                f"    ... and {len(d['frames_missing']) - max_list} more (--json lists all)"
            )
    return "\n".join(lines)
