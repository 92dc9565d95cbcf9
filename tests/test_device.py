"""The CPU threads an engine computes with: OMP_NUM_THREADS where it is a number, else the CPUs
this process may run on."""
from __future__ import annotations

import os

import pytest

from pii_redact.core.device import cpu_threads


@pytest.mark.parametrize("setting, expected", [("3", 3), ("2,1", 2), (" 5 ", 5), ("0", None), ("-1", None),
                                               ("many", None), ("", None)])
def test_cpu_threads_follow_omp_num_threads_where_it_is_a_number(monkeypatch, setting, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", setting)
    assert cpu_threads() == (expected or len(os.sched_getaffinity(0)))
