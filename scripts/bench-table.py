#!/usr/bin/env python3
"""The markdown table of scripts/bench, from the samples it wrote: bench-table.py SAMPLES PROFILE
STARTED ELAPSED RUNS ARGS > results.md. Kept apart from the shell script so each stays one job."""
import json, os, statistics, subprocess, sys
S, profile, started, elapsed, runs, args = sys.argv[1:7]

def samples(key):
    p = os.path.join(S, key)
    return [float(x) for x in open(p).read().split()] if os.path.exists(p) else None

def med(key):
    v = samples(key)
    return statistics.median(v) if v else None

def jload(name):
    p = os.path.join(S, name)
    return json.load(open(p)) if os.path.exists(p) else None

def ms(v):
    return "—" if v is None else (f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms")

rows = []
def row(figure, berth, ref, ratio, goal, met):
    rows.append((figure, berth, ref, ratio, goal, "—" if met is None else ("yes" if met else "**no**")))

def ratio_row(figure, bkey, rkey, goal_ratio, ref_name):
    b, r = med(bkey), med(rkey)
    if b is None or r is None:
        return
    # Each run times berth and its reference back to back: the median of those paired ratios
    # cancels most of the shared machine's slow and fast minutes.
    q = statistics.median(x / y for x, y in zip(samples(bkey), samples(rkey)))
    rng = lambda k: f"{min(samples(k)):.0f}–{max(samples(k)):.0f}"
    row(figure, f"{ms(b)} ({rng(bkey)})", f"{ref_name} {ms(r)} ({rng(rkey)})", f"{q:.2f}", f"≤ {goal_ratio:.2f}", q <= goal_ratio)

ratio_row("1. cold converge, app A (1 accessory + 2 roles, 6 containers on 3 hosts), one-shot apply + converge", "f1_a_oneshot", "f1_a_floor", 1.10, "floor")
ratio_row("1. cold converge, app A, operator `apply --wait`", "f1_a_operator", "f1_a_floor", 1.10, "floor")
ratio_row("1. cold converge, app B (10 roles × 3 hosts, 30 containers), one-shot apply + converge", "f1_b_oneshot", "f1_b_floor", 1.10, "floor")
ratio_row("1. cold converge, app B, operator `apply --wait`", "f1_b_operator", "f1_b_floor", 1.10, "floor")

r = jload("f2.json")
if r:
    b, f = r["berth"], r["reference"]
    for p, goal in (("p50", 20), ("p99", 100)):
        v, ref = b[p + "_ms"], f[p + "_ms"]
        row(f"2. reaction: etcd write of a changed spec → first container create (Docker event), {p} of {b['n']} changes",
            ms(v), f"bare `docker create` on the same host {ms(ref)}", f"{v / ref:.2f}", f"≤ {goal} ms", v <= goal)

r = jload("f3.json")
if r:
    n = max(r["reconciles"], 1)
    row(f"3. no-op resync, 20 Ready apps on 3 hosts: Docker API calls in {r['window_s']} s ({r['reconciles']} app resyncs)",
        str(r["calls"]), f"{r['foreign_events']} container events of other apps on the shared hosts", "—", "0", r["calls"] == 0)
    cpu = r["cpu_ticks"] * 1000.0 / r["hz"] / n
    row("3. no-op resync: operator CPU per app resync (utime+stime / reconciles)", f"{cpu:.2f} ms", "—", "—", "—", None)

r = jload("f4.json")
if r:
    row(f"4. drift repair: `docker rm -f` → replacement started, p50 ({r['n']} trials)", ms(r["p50_ms"]), "—", "—", "≤ 1 s", r["p50_ms"] <= 1000)
    row(f"4. drift repair, p99 ({r['n']} trials)", ms(r["p99_ms"]), "—", "—", "—", None)

ratio_row("5. 10 containers on host1 from scratch: one-shot apply + converge vs `docker-compose up -d`", "f5_oneshot_cold", "f5_compose_cold", 0.9, "compose")
ratio_row("5. from scratch: operator `apply --wait` vs `docker-compose up -d`", "f5_operator_cold", "f5_compose_cold", 0.9, "compose")
ratio_row("5. no-op: one-shot apply + converge vs `docker-compose up -d`", "f5_oneshot_noop", "f5_compose_noop", 0.1, "compose")
ratio_row("5. no-op: operator `apply --wait` vs `docker-compose up -d`", "f5_operator_noop", "f5_compose_noop", 0.1, "compose")

p = os.path.join(S, "f6.jsonl")
if os.path.exists(p):
    b = {j["bench"]: (j["median_ns"] / 1e6, j["best_ns"] / 1e6) for j in map(json.loads, open(p))}
    def plan_row(label, key, goal):
        med, best = b[key]
        row(label, f"{ms(med)} (best {ms(best)})", "—", "—", "≤ 5 ms" if goal else "—", (med <= 5) if goal else None)
    plan_row("6. plan one app over 1,000 hosts (2,503 containers), no-op; criterion median thread CPU time", "one_app_1000_hosts_noop", True)
    plan_row("6. plan one app over 1,000 hosts, fresh (all creates)", "one_app_1000_hosts_fresh", True)
    plan_row("6. plan one app over 1,000 hosts, rolling (all replaces)", "one_app_1000_hosts_rolling", True)
    plan_row("6. plan 1,000 apps over 100 hosts (4,000 containers), no-op, all apps", "thousand_apps_100_hosts_noop", False)
m = jload("f6-mem.json")
if m:
    row("6. observation caches: 1,000 hosts × 20 containers, RSS growth", f"{m['delta_mb']:.1f} MB ({m['bytes_per_container']} B/container)", "—", "—", "≤ 100 MB", m["delta_mb"] <= 100)

cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
kernel = os.uname().release
docker = subprocess.run(["/usr/bin/docker", "--version"], capture_output=True, text=True).stdout.strip()
print(f"Measured {started} on {os.cpu_count()} cores ({cpu}), Linux {kernel}, {docker}; berth {profile} build;")
failed = open(os.path.join(S, "failed")).read().split() if os.path.exists(os.path.join(S, "failed")) else []
if failed:
    print(f"NOT MEASURED (the figure failed, see the bench's log): figure(s) {', '.join(failed)}.")
print(f"Figures 1 and 5: {runs} interleaved runs; times are medians (range in parentheses), the ratio is the median of")
print(f"the per-run ratios (berth and its reference timed back to back in each run). The bench took {elapsed} s.")
print("The machine is shared with other test runs: absolute times are noisy, ratios are taken side by side.")
print()
print("| figure | berth | reference | ratio | goal | met? |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")

# Figure 7 has a table of its own: one row per N, so growth per app reads down a column.
p = os.path.join(S, "f7.jsonl")
if os.path.exists(p):
    g = [json.loads(l) for l in open(p) if l.strip()]
    print()
    print("Figure 7, growth with work: N apps, each one container on each of the 3 hosts and its own network there")
    print("(3N containers, 3N networks), applied at once (`berth apply --wait`, one operator, `--concurrency 8`) until")
    print("every App is Ready; then a fresh operator (`--resync 10s`) resyncs them all with nothing to do, for "
          f"{g[0]['window_s']} s.")
    print()
    print("| N apps | containers | apply → all Ready | per app | Docker calls | per app | operator RSS (peak) | operator CPU | per app | no-op resync: Docker calls (app resyncs; other apps' container events) | goal | met? |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in g:
        n, cpu = r["n"], r["cpu_ticks"] / r["hz"]
        cells = [
            str(n), str(r["containers"]),
            f"{r['ready_s']:.1f} s", f"{r['ready_s'] / n * 1000:.0f} ms",
            str(r["calls"]), f"{r['calls'] / n:.1f}",
            f"{r['rss_kb'] / 1024:.1f} MB ({r['hwm_kb'] / 1024:.1f} MB)",
            f"{cpu:.2f} s", f"{cpu / n * 1000:.1f} ms",
            f"{r['resync_calls']} ({r['resync_reconciles']}; {r['foreign_events']})", "0",
            "yes" if r["resync_calls"] == 0 else "**no**",
        ]
        print("| " + " | ".join(cells) + " |")

# Figure 9: the proxy. One row per variant: the same one-host web role deployed 5 times in a row
# (`apply --wait` each), a request loop through it the whole time.
p = os.path.join(S, "f9.jsonl")
if os.path.exists(p):
    v = {r["variant"]: r for r in (json.loads(l) for l in open(p) if l.strip())}
    print()
    print("Figure 9, zero-downtime deploys: 5 rolling deploys of a one-host web role (busybox httpd, image v1/v2 in")
    print("turn), a sequential request loop (a new connection each, every 10 ms) the whole time; proxied = start-first")
    print("through host1's Caddy (`roles.web.proxy`), published = stop-first on a published port (no proxy).")
    print()
    print("| variant | deploys | seconds | requests | failed | p99 during the deploys | p99 at rest | goal | met? |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("proxied", "published"):
        r = v.get(name)
        if not r:
            continue
        goal, met = ("0 failed", "yes" if r["failed"] == 0 else "**no**") if name == "proxied" else ("—", "—")
        cells = [name, str(r["deploys"]), f"{r['seconds']:.1f} s", str(r["requests"]), str(r["failed"]),
                 ms(r["p99_roll_ms"]), ms(r["p99_rest_ms"]), goal, met]
        print("| " + " | ".join(cells) + " |")
