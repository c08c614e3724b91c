"""One rule for the device of every command (hmtools.devices): checked up front, one GPU per
torchrun rank."""

from __future__ import annotations

import pytest
import torch

from hmtools.annotation.segmenters import SamSegmenter, small_sam
from hmtools.devices import check_device, rank_device, resolve_device
from hmtools.engine.config import TrainConfig
from hmtools.engine.train import train
from hmtools.errors import InputError

NOT_A_DEVICE = "not a device|use cpu"


def test_cuda_means_the_gpu_of_this_torchrun_rank(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert rank_device("cuda") == "cuda" and rank_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device("cuda") == "cuda:3"
    assert rank_device("cuda:1") == "cuda:1" and rank_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(InputError, match="LOCAL_RANK"):
        rank_device("cuda")


def test_devices_that_are_not_there_are_clear_errors(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match=NOT_A_DEVICE):
        check_device("tpu")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n:
        assert resolve_device("auto") == torch.device("cuda")
        with pytest.raises(InputError, match="sees"):
            check_device(f"cuda:{n}")
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(InputError, match="no CUDA GPU"):
            check_device("cuda:0")
        monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun rank 1 on a machine without GPUs
        with pytest.raises(InputError, match="--device cuda:1: no CUDA GPU"):
            resolve_device("cuda")
    # every command goes through the same check before it does any work
    with pytest.raises(InputError, match=NOT_A_DEVICE):
        SamSegmenter(small_sam(), "tpu")
    with pytest.raises(InputError, match=NOT_A_DEVICE):
        train(TrainConfig(device="tpu", out="never-written"))
