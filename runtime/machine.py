"""What this machine lends the process, as Linux tells it: the cores it may use (affinity, a
cgroup's CPU quota, physical cores among them) and the memory it may still take (``MemAvailable``,
a cgroup's limit), for the default thread count and the tiles chosen by memory. Off Linux most of
these are None, and the callers fall back to onnxruntime's defaults.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def usable_cores() -> int:
    """The cores this process may use: fewer than the machine's under ``taskset`` or a
    container's cpuset, or a cgroup's CPU quota (:func:`cpu_quota`: ``docker run --cpus``, a
    Kubernetes CPU limit), on Linux; else every core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS or Windows
        return os.cpu_count() or 1
    quota = cpu_quota()
    return cores if quota is None else max(1, min(cores, quota))


CGROUPS = Path("/sys/fs/cgroup")


def cpu_quota(root: Path = CGROUPS, membership: str = "/proc/self/cgroup") -> int | None:
    """The CPUs a cgroup's quota gives this process, rounded up (``docker run --cpus=1.5``: 2),
    the least of its cgroup's and its ancestors'; None without one (or off Linux). A quota does
    not shrink the cores the process may run on, and onnxruntime's default counts those: a
    container limited to 2 CPUs on a 32-core host ran 32 threads of each graph in 2 CPUs' time
    (with 32 threads on 2 cores, a batch of 9 Kodak images took 78 s, against 5.4 s with 2).

    Read as the JVM, Go 1.25 and .NET read it: cgroup v2's ``cpu.max`` (``"QUOTA PERIOD"``, or
    ``"max PERIOD"``), cgroup v1's ``cpu.cfs_quota_us`` (-1 for none) and ``cpu.cfs_period_us``,
    in the folder of the cgroup that ``membership`` names under the hierarchy's mount and in
    each folder above it (a container without its own cgroup namespace names its cgroup as
    the host does, and has that cgroup mounted as the root)."""
    limits = [limit for folder, v2 in _cgroup_folders("cpu", root, membership)
              if (limit := (_v2_quota if v2 else _v1_quota)(folder)) is not None]
    return max(1, math.ceil(min(limits))) if limits else None


def _cgroup_folders(controller: str, root: Path, membership: str):
    """The folders of this process's cgroups that may hold ``controller``'s limits, each with
    whether it is cgroup v2's: the cgroup that ``membership`` names under the hierarchy's mount,
    and each folder above it (a container without its own cgroup namespace names its cgroup as
    the host does, and has that cgroup mounted as the root)."""
    try:
        with open(membership, encoding="ascii", errors="replace") as lines:
            groups = [line.rstrip("\n").split(":", 2) for line in lines]
    except (OSError, ValueError):
        return
    for entry in groups:
        if len(entry) != 3:
            continue
        _, controllers, path = entry
        parts = [part for part in path.split("/") if part not in ("", ".", "..")]
        if controllers == "":  # cgroup v2
            folders, v2 = [root], True
        elif controller in controllers.split(","):  # mounted by its name, or by the list it shares (cpu,cpuacct)
            folders, v2 = list(dict.fromkeys([root / controllers, root / controller])), False
        else:
            continue
        for folder in folders:
            for depth in range(len(parts) + 1):
                yield folder.joinpath(*parts[:depth]), v2


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text(encoding="ascii").split()
        return int(quota) / int(period) if int(quota) > 0 and int(period) > 0 else None
    except (OSError, ValueError):  # none here, "max", or not as cgroup v2 writes it
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text(encoding="ascii"))
        period = int((folder / "cpu.cfs_period_us").read_text(encoding="ascii"))
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def memory_free(root: Path = CGROUPS, membership: str = "/proc/self/cgroup",
                meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes this process can still take before memory runs out, on Linux: the kernel's
    estimate of what is available without swapping (``MemAvailable``), or less where a cgroup
    (a container's ``--memory``, a systemd unit's ``MemoryMax``) leaves less under its limit
    (cgroup v2's ``memory.max`` less ``memory.current``, v1's ``memory.limit_in_bytes`` less
    ``memory.usage_in_bytes``, the least of the process's cgroup and those above it); None
    where neither can be read (off Linux). On Linux an allocation beyond it rarely fails: the
    kernel ends the process (``Killed``, no message of nicodec's can be given)."""
    free = []
    try:
        with open(meminfo, encoding="ascii", errors="replace") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    free.append(int(line.split()[1]) * 1024)  # in kB
                    break
    except (OSError, ValueError, IndexError):
        pass
    for folder, v2 in _cgroup_folders("memory", root, membership):
        names = ("memory.max", "memory.current") if v2 else ("memory.limit_in_bytes", "memory.usage_in_bytes")
        try:
            limit, used = (int((folder / name).read_text(encoding="ascii")) for name in names)
        except (OSError, ValueError):  # none here, "max", or not as the kernel writes it
            continue
        if limit < 2 ** 60:  # v1's "no limit" is a number near 2**63
            # The usage counts the files' pages in the cache, which the kernel takes back before
            # ending anything: the inactive ones are left out, as Kubernetes' working set does.
            free.append(max(0, limit - used + _inactive_files(folder, v2)))
    return min(free) if free else None


def _inactive_files(folder: Path, v2: bool) -> int:
    """The bytes of inactive file pages in a cgroup's ``memory.stat`` (0 if it cannot be read)."""
    key = "inactive_file" if v2 else "total_inactive_file"
    try:
        for line in (folder / "memory.stat").read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def resident_bytes(statm: str = "/proc/self/statm") -> int | None:
    """This process's resident memory now, on Linux; None elsewhere."""
    try:
        with open(statm, encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


CPU_TOPOLOGY = Path("/sys/devices/system/cpu")


def physical_cores(cpus, topology: Path | None = None) -> int | None:
    """The physical cores among the logical CPUs ``cpus`` (those that share a core, its
    hyperthreads, count once), as Linux's sysfs (``topology``, :data:`CPU_TOPOLOGY` by default)
    tells them; None where it does not."""
    topology = CPU_TOPOLOGY if topology is None else topology
    cores = set()
    try:
        for cpu in cpus:
            folder = topology / f"cpu{cpu}" / "topology"
            try:  # core_cpus_list from Linux 5.3, thread_siblings_list before (the same list)
                siblings = (folder / "core_cpus_list").read_text(encoding="ascii")
            except FileNotFoundError:
                siblings = (folder / "thread_siblings_list").read_text(encoding="ascii")
            cores.add(siblings.strip())
    except (OSError, ValueError):
        return None
    return len(cores) or None


def default_threads() -> int | None:
    """The intra-op threads of a session given none: onnxruntime's own count, one per physical
    core, but of the cores this process may use (:func:`usable_cores`), and given explicitly.

    onnxruntime pins the threads of a count it picks itself to cores, the calling thread left
    free (on 2 cores: each session's one thread to the second core); once the scheduler moved
    the calling thread onto that core too (after a file's fsync, say), they took turns on it
    while the first stayed idle, for good. On 2 cores the command line took 15.2 s to encode 576
    images of 128x128 and 21 s to decode them, against 8.7 and 13.7 s with the count given
    (``Codec.encode`` after such a write: 23 ms an image against 14; Kodak's images, whose
    runs are long, the same). A count given is not pinned.

    Without Linux's topology files (a sandbox without /sys), the CPUs the process may use. Off
    Linux None (onnxruntime's default, pinned), unless the process may use fewer cores than the
    machine has (then that number).
    """
    allowed = usable_cores()
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not on macOS or Windows
        return allowed if allowed < (os.cpu_count() or allowed) else None
    physical = physical_cores(sorted(cpus))
    return max(1, min(allowed, physical if physical is not None else allowed))
