"""The memory budget: how much of the machine's memory a model may hold, and whether it must page.

What counts is the process's resident set (RSS), the model's mapped file pages
included: a model file larger than the budget is run by keeping only some
experts mapped (gptoss_cli.expert_pager) and releasing the others ourselves,
rather than letting the kernel reclaim them at random or the process be killed.

The default budget is what the machine has available now (MemAvailable, which
counts the reclaimable page cache) minus a margin for everything else. A budget
that cannot hold what every step needs (the process as it is, the dense
weights, and one layer's experts for a full prompt chunk) is refused with one
OptionError line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .byte_sizes import format_bytes, parse_size
from .errors import OptionError

__all__ = [
    "BudgetPlan", "default_budget", "meminfo", "parse_budget", "peak_rss_bytes", "plan_budget", "rss_bytes",
    "size_problem", "slack_for", "MARGIN_MIN", "MARGIN_SHARE",
]

# The default leaves this much of the machine to everything else: at least 1 GB, or a fifth of it.
# (With a tenth, a 120b on 23.5 GB had the kernel reclaim pages of its hot set three times as often:
# the page cache needs room for the reads in flight and the other processes' files.)
MARGIN_MIN = 10**9
MARGIN_SHARE = 0.20
# Room inside a budget for what moves between measurements: NumPy scratch of a prompt chunk,
# pages of new embedding rows and KV cache, the allocator's slack.
SLACK_MIN = 128 * 10**6
SLACK_SHARE = 0.02


def meminfo(text: str | None = None) -> dict[str, int]:
    """/proc/meminfo (or `text` in its format) in bytes; empty where there is none."""
    if text is None:
        try:
            with open("/proc/meminfo") as f:
                text = f.read()
        except OSError:
            return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def default_budget(info: dict[str, int] | None = None) -> tuple[int, str] | None:
    """(bytes, how it was chosen): MemAvailable minus the margin; None where the OS does not say."""
    info = meminfo() if info is None else info
    if "MemAvailable" not in info:
        return None
    margin = max(MARGIN_MIN, int(MARGIN_SHARE * info.get("MemTotal", info["MemAvailable"])))
    budget = max(0, info["MemAvailable"] - margin)
    return budget, f"{format_bytes(info['MemAvailable'])} available minus a {format_bytes(margin)} margin"


def parse_budget(value: str | int) -> int:
    """--mem-budget as bytes ("16G", "500M", or a number of bytes); OptionError when it is not a size."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise OptionError(f"invalid value for mem budget: {value} (must be a positive size)",
                              "mem_budget", f"{value} (must be a positive size)")
        return value
    try:
        return parse_size(str(value))
    except ValueError as e:
        raise OptionError(f"invalid value for mem budget: {e}", "mem_budget", str(e)) from None


def size_problem(value: object) -> str | None:
    """Why `value` is not a budget (the options table's rule), or None."""
    try:
        parse_budget(value if isinstance(value, int) else str(value))
    except OptionError as e:
        return e.why
    return None


def _statm_resident_pages() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1])


def rss_bytes() -> int:
    """The process's resident set now, mapped file pages included."""
    try:
        return _statm_resident_pages() * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """The highest resident set this process has had (VmHWM; getrusage's ru_maxrss)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True)
class BudgetPlan:
    """What a budget leaves for experts, worked out before the model runs."""

    budget: int
    chosen: str  # "--mem-budget", or how the default was found
    base: int  # resident when the plan was made, plus the dense weights still to be mapped
    needed: int  # the whole file plus the KV caches at full context: what plain maps could grow to
    slot_bytes: int  # one expert (its three matrices), in whole pages
    min_slots: int  # experts one layer can need at once (a full prompt chunk)
    slack: int

    @property
    def paging(self) -> bool:
        """Whether experts must be paged: the model could outgrow the budget on plain maps."""
        return self.base + self.needed + self.slack > self.budget

    @property
    def minimum(self) -> int:
        """The smallest budget whose own slack still leaves the base and one layer's experts."""
        return -int(-(self.base + SLACK_MIN + self.min_slots * self.slot_bytes) // (1 - SLACK_SHARE))

    def hot_slots(self, other: int) -> int:
        """Experts that fit beside `other` resident bytes (never fewer than one layer needs)."""
        return max(self.min_slots, (self.budget - self.slack - other) // self.slot_bytes)


def slack_for(budget: int) -> int:
    return SLACK_MIN + int(SLACK_SHARE * budget)


def plan_budget(
    budget: int, chosen: str, *, rss: int, dense_bytes: int, needed: int, slot_bytes: int, min_slots: int
) -> BudgetPlan:
    """The plan for `budget`; OptionError (one line) when the budget cannot run the model at all."""
    p = BudgetPlan(budget, chosen, rss + dense_bytes, needed, slot_bytes, min_slots, slack_for(budget))
    if p.paging and budget < p.minimum:
        why = (
            f"{format_bytes(budget)} is below the {format_bytes(p.minimum)} this model needs at least "
            f"({format_bytes(rss)} in use, {format_bytes(dense_bytes)} of dense weights, "
            f"{format_bytes(min_slots * slot_bytes)} for one layer's {min_slots} experts, "
            f"{format_bytes(slack_for(p.minimum))} slack)"
        )
        if chosen != "--mem-budget":
            why += f"; the default budget is {chosen}"
        raise OptionError(f"invalid value for mem budget: {why}", "mem_budget", why)
    return p
