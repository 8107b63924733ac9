"""Human-readable tables of ``tfwd.bench.run``'s results."""
from __future__ import annotations


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{1000 * seconds:,.1f}"


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [" | ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in [header, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _sharded_inverse_table(entries: list[dict]) -> list[str]:
    """Per model: the inverse step's FLOPs per replica, every replica computing every inverse
    against the inverses shared out (``tfwd.optimizers.sharding``)."""
    rows = {}
    for e in entries:
        flops = e.get("floor_components", {}).get("inverse", {}).get("inverse_flops_by_replica")
        if flops is not None and e["model"] not in rows:
            shared = flops["sharded_flops_per_replica"]
            rows[e["model"]] = [e["model"], flops["replicas"],
                                f"{flops['unsharded_flops_per_replica'] / 1e9:,.2f}",
                                " / ".join(f"{f / 1e9:,.2f}" for f in shared),
                                _ratio(max(shared) / flops["unsharded_flops_per_replica"])]
    if not rows:
        return []
    return ["", "Inverse step, GFLOP per replica (inverse_cost): every replica computing every "
                "inverse, against the inverses shared out; share = largest / unsharded.",
            _table(["model", "replicas", "unsharded", "sharded", "share"], list(rows.values()))]


def format_tables(results: dict) -> str:
    machine = results["machine"]
    out = [
        f"Machine: {machine['cpu_model']}, {machine['logical_cores']} cores, TensorFlow "
        f"{machine['tensorflow']}, Keras {machine['keras']}; load average "
        f"{machine['load_average_start']} -> {machine['load_average_end']}; "
        f"{results['wall_seconds']:.0f} s.",
        "",
        "Step time (ms, wall). K-FAC: mean over whole periods (rare steps at their share); "
        "ordinary/statistics/inverse: medians of each kind of step; floor = SGD + t_precond + "
        "t_stats/cov_every + t_inverse/inv_every; ratio = step/floor; to SGD = step/SGD step; ord.ratio = ordinary/"
        "(SGD + t_precond); (cpu): the same in process CPU seconds; cpu share: of all cores.",
    ]
    rows = []
    for e in results["steps"]:
        components = e.get("floor_components", {})
        rows.append([
            e["model"], e["batch_size"], e["optimizer"], _ms(e["step_seconds"]),
            _ms(e.get("ordinary_step_median_seconds")), _ms(e.get("statistics_step_median_seconds")),
            _ms(e.get("inverse_step_seconds")), _ms(components.get("precondition_seconds")),
            _ms(components.get("statistics_seconds")), _ms(components.get("inverse_seconds")),
            _ms(e.get("floor_seconds")), _ratio(e.get("ratio_to_floor")),
            _ratio(e.get("ratio_to_floor_cpu")), _ratio(e.get("ratio_to_sgd")),
            _ratio(e.get("ratio_to_sgd_cpu")), _ratio(e.get("ordinary_ratio")),
            _ratio(e.get("ordinary_ratio_cpu")), e["load_average"], e["cpu_share"],
        ])
    out.append(_table(
        ["model", "batch", "optimizer", "step", "ordinary", "statistics", "inverse",
         "t_precond", "t_stats", "t_inverse", "floor", "ratio", "ratio(cpu)", "to SGD",
         "to SGD(cpu)", "ord.ratio",
         "ord.ratio(cpu)", "load", "cpu share"],
        rows))
    out += _sharded_inverse_table(results["steps"])
    targets = results["targets"]
    out += ["", f"K-FAC ratio_to_floor target <= {targets['kfac_ratio_to_floor']['max_ratio']}: "
                f"worst {_ratio(targets['kfac_ratio_to_floor']['worst'])}, "
                f"met: {targets['kfac_ratio_to_floor']['met']}"]
    if results["noise"]:
        out += ["", "Curvature noise on large-batch SGD (ms per step; ratio to plain LB SGD)."]
        out.append(_table(
            ["model", "M_L", "M_S", "kind", "step", "plain SGD", "noise_step_ratio", "ratio(cpu)",
             "load", "cpu share"],
            [[e["model"], e["large_batch_size"], e["small_batch_size"], e["kind"],
              _ms(e["step_seconds"]), _ms(e["plain_sgd_step_seconds"]),
              _ratio(e["noise_step_ratio"]), _ratio(e["noise_step_ratio_cpu"]),
              e["load_average"], e["cpu_share"]]
             for e in results["noise"]]))
        out += ["", f"Noise ratio target <= {targets['noise_step_ratio']['max_ratio']}: worst "
                    f"{_ratio(targets['noise_step_ratio']['worst'])}, "
                    f"met: {targets['noise_step_ratio']['met']}"]
    return "\n".join(out)
