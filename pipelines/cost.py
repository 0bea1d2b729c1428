"""What a run's model calls cost: the config's price table applied to the usage meters.

Two ways a backend is priced (``backends.NAME.price``):

- per million tokens (a hosted API): prompt, completion, and prompt tokens the
  provider served from its prompt cache (``cached_prompt_per_1m``);
- per GPU-hour (a model served for the run): the generation time of the run ×
  ``gpus``, shared among the roles that used it by their time in requests.

A reply from trajforge's own request cache costs nothing: what it would have
cost is reported as a saving (for a GPU-hour backend, an estimate: the cached
requests' mean request time at the backend's concurrency).

Every figure is derived from ``Usage`` meters and one number of seconds, so the
manifest, the budget checks during the run, the summary, card and report agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas import DatasetManifest, PriceConfig, RunConfig, RunCost, Usage

PER = 1_000_000
STAGES = ("synthesis", "simulation", "verification")


def token_cost(price: PriceConfig, usage: Usage) -> float:
    cached = min(usage.cached_prompt_tokens, usage.prompt_tokens)
    cached_rate = price.prompt_per_1m if price.cached_prompt_per_1m is None else price.cached_prompt_per_1m
    return ((usage.prompt_tokens - cached) * price.prompt_per_1m + cached * cached_rate
            + usage.completion_tokens * price.completion_per_1m) / PER


def token_saving(price: PriceConfig, usage: Usage) -> float:
    return (usage.saved_prompt_tokens * price.prompt_per_1m + usage.saved_completion_tokens * price.completion_per_1m) / PER


def stage_of(config: RunConfig, user: str) -> str:
    """Which stage a model user belongs to: a role simulates, a generator's step synthesizes, a filter's verifies."""
    if user in config.roles():
        return "simulation"
    step = user.split(".", 1)[0]
    if any(g.name == step for g in config.generators):
        return "synthesis"
    return "verification"


def run_cost(config: RunConfig, usage: Mapping[str, Usage], gpu_seconds: float = 0.0,
             accepted: int | None = None) -> RunCost | None:
    """The run's cost, or None when no backend it used has a price."""
    users = config.model_users()
    priced = {user: config.backends[b].price for user, b in users.items() if config.backends[b].price is not None}
    if not priced:
        return None
    by_role: dict[str, float] = {}
    saved: dict[str, float] = {}
    gpu_hours: dict[str, float] = {}
    per_backend_time: dict[str, float] = {}
    for user, price in priced.items():
        u = usage.get(user, Usage())
        if price.gpu_hour is None:
            by_role[user], saved[user] = token_cost(price, u), token_saving(price, u)
        else:
            per_backend_time[users[user]] = per_backend_time.get(users[user], 0.0) + u.latency_s
    for backend, busy in per_backend_time.items():
        b = config.backends[backend]
        price = b.price
        assert price is not None and price.gpu_hour is not None
        hours = gpu_seconds / 3600 * price.gpus
        gpu_hours[backend] = hours
        sharing = [user for user, name in users.items() if name == backend]
        for user in sharing:
            u = usage.get(user, Usage())
            share = u.latency_s / busy if busy else 1 / len(sharing)
            by_role[user] = hours * price.gpu_hour * share
            mean = u.latency_s / u.requests if u.requests else 0.0
            saved[user] = u.cached * mean / b.max_concurrency / 3600 * price.gpus * price.gpu_hour
    total = sum(by_role.values())
    by_stage: dict[str, float] = {}
    by_backend: dict[str, float] = {}
    for user, cost in by_role.items():
        stage = stage_of(config, user)
        by_stage[stage] = by_stage.get(stage, 0.0) + cost
        by_backend[users[user]] = by_backend.get(users[user], 0.0) + cost
    currency = next(iter(priced.values())).currency
    return RunCost(currency=currency, total=total, by_role=by_role,
                   by_stage={s: by_stage[s] for s in STAGES if s in by_stage}, by_backend=by_backend,
                   per_accepted=total / accepted if accepted else None, saved=sum(saved.values()),
                   saved_by_role=saved, gpu_hours=gpu_hours)


def money(value: float | None, currency: str = "USD") -> str:
    """A cost as people read it: 4 significant digits, so a fraction of a cent per row still shows."""
    if value is None:
        return "n/a"
    sign = "$" if currency == "USD" else ""
    suffix = "" if sign else f" {currency}"
    return f"{sign}{value:.4g}{suffix}" if abs(value) < 1000 else f"{sign}{value:,.2f}{suffix}"


def cost_lines(cost: RunCost) -> list[str]:
    """The end-of-run summary's cost lines (also the card's and the report's wording)."""
    m = lambda v: money(v, cost.currency)  # noqa: E731
    lines = [f"cost {m(cost.total)}" + (f", {m(cost.per_accepted)} per accepted trajectory"
                                        if cost.per_accepted is not None else "")
             + (f"; the request cache saved {m(cost.saved)}" if cost.saved else "")]
    if cost.by_stage:
        lines.append("by stage: " + ", ".join(f"{stage} {m(v)}" for stage, v in cost.by_stage.items()))
    if cost.by_role:
        lines.append("by role: " + ", ".join(f"{role} {m(v)}" for role, v in cost.by_role.items()))
    if cost.gpu_hours:
        lines.append("GPU-hours: " + ", ".join(f"{b} {h:.3g}" for b, h in cost.gpu_hours.items()))
    return lines


def stop_line(manifest: DatasetManifest) -> str | None:
    """Why the run stopped, in words; None for a fixed run that ran every task (nothing to say)."""
    stop = manifest.stop
    if stop is None or (stop.reason == "num_tasks" and not stop.target_accepted):
        return None
    why = {"target_accepted": f"target reached: {manifest.accepted} accepted (target {stop.target_accepted})",
           "num_tasks": "every task run"}.get(stop.reason, f"stopped early by {stop.reason}: {stop.detail}")
    extra = [f"{stop.shards} shards"]
    if stop.surplus:
        extra.append(f"{stop.surplus} accepted rows beyond the target kept as rejected at stage 'target'")
    if stop.discarded_shards:
        extra.append(f"{stop.discarded_shards} shards started beyond the target discarded")
    if stop.unstarted:
        extra.append(f"{stop.unstarted} tasks never started")
    return f"{why} ({'; '.join(extra)})"


def card_section(manifests: list[DatasetManifest]) -> list[str]:
    """The card's "Cost and yield" section: one line per version, and the newest priced run's split; nothing when
    no version recorded a cost or a stop (versions written by older code)."""
    if not any(m.cost or m.stop for m in manifests):
        return []
    rows = []
    for m in manifests:
        c = m.cost
        cur = c.currency if c else "USD"
        yield_ = (m.accepted + m.stages.get("target", 0)) / m.tasks if m.tasks else 0.0
        rows.append([m.version, m.tasks, m.accepted, f"{100 * yield_:.1f}%", money(c.total, cur) if c else "",
                     money(c.per_accepted, cur) if c else "", money(c.saved, cur) if c else "",
                     m.stop.reason if m.stop else ""])
    header = ["version", "tasks", "accepted", "yield", "cost", "per accepted", "saved by the cache", "stopped by"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = ("## Cost and yield\n\nPer version (run): yield is accepted / tasks; cost from the price table of "
            "each backend in the run config (cached requests cost nothing).\n\n" + "\n".join(lines))
    priced = [m for m in manifests if m.cost]
    if priced:
        text += f"\n\nVersion {priced[-1].version}: " + "; ".join(cost_lines(priced[-1].cost)) + "."
    return [text]
